package web_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/testenv"
)

// buildMailsync compiles the mailsync command for process tests.
func buildMailsync(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailsync")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mailsync")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// mailsyncCLI runs one mailsync command to its end, with stdin, and returns its stdout.
func mailsyncCLI(t *testing.T, bin string, env []string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mailsync %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// serveProcess is a `mailsync serve` process on a free loopback port.
type serveProcess struct {
	cmd *exec.Cmd
	url string
}

func startServe(t *testing.T, bin string, env []string) *serveProcess {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--addr", addr)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, url: "http://" + addr}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailsync serve at %s not ready after 30 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// api sends one request with a bearer token and decodes the JSON answer into out.
func api(t *testing.T, base, token, method, path string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

type taskJSON struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Live  bool   `json:"live"`
	Error string `json:"error"`
}

// Real processes on one database: a server whose worker runs the sync is SIGKILLed; the page,
// served by a second server that runs no reaper, does not wait on the dead task: its event stream
// reaps it once the heartbeat timeout passes, the second server's worker runs its next attempt,
// and the page follows that to the end, without a click.
func TestBrowserKilledWorkerProcess(t *testing.T) {
	testenv.Chromium(t) // skip before building anything when there is no browser
	d := imaptest.StartDovecot(t)
	bin := buildMailsync(t)
	u := d.AddUser(t, "kim", "kim-imap-password")
	const messages = 500
	d.WriteMailgen(t, u, mailgen.Options{Seed: 5, Messages: messages, Folders: []string{"INBOX", "Sent"}})

	dir := t.TempDir()
	env := []string{"MAILSYNC_DATA_DIR=" + dir, "MAILSYNC_DB=sqlite:" + filepath.Join(dir, "mailsync.db"),
		"MAILSYNC_HEARTBEAT_INTERVAL=500ms", "MAILSYNC_HEARTBEAT_TIMEOUT=4s", "MAILSYNC_SELF_FENCE=3s",
		"MAILSYNC_REAP_INTERVAL=1h", // no reaper in the way: the page's stream must settle the dead task
		"MAILSYNC_LOG_LEVEL=warn"}
	mailsyncCLI(t, bin, env, userPassword+"\n", "user", "add", userEmail, "--password-stdin")
	token := strings.TrimSpace(mailsyncCLI(t, bin, env, "", "token", "create", userEmail))
	mailsyncCLI(t, bin, env, u.Password+"\n", "account", "add", "--user", userEmail, "--name", "Kim",
		"--imap-url", fmt.Sprintf("imap://%s@%s:%d", u.Login, d.Host(), d.Port()), "--tls", "none", "--password-stdin")

	// The doomed server claims the sync, which hangs: Dovecot is frozen.
	doomed := startServe(t, bin, env)
	d.Pause(t)
	var started struct {
		Task taskJSON `json:"task"`
	}
	api(t, doomed.url, token, "POST", "/api/accounts/1/sync", &started)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var tk taskJSON
		api(t, doomed.url, token, "GET", "/api/sync/tasks/"+started.Task.ID, &tk)
		if tk.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sync is %s after 10 s, want running", tk.State)
		}
	}

	// The page is served by a second server.
	survivor := startServe(t, bin, env)
	browser := newBrowser(t)
	p := newPage(t, browser, survivor.url)
	p.login()
	p.waitFor("the running sync", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'running'`, card(1)), 10*time.Second)

	if err := doomed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	d.Resume(t) // the freeze only held the sync until the kill
	p.waitFor("the retry's success", fmt.Sprintf(`(c => c.dataset.state === 'succeeded' && c.dataset.taskId === %q)(document.querySelector('%s'))`, started.Task.ID, card(1)), time.Minute)
	t.Logf("the page showed the retried sync succeeded %v after the SIGKILL (heartbeat timeout 4 s)", time.Since(killed).Round(100*time.Millisecond))
	p.screenshot("killed-worker-retried")
	if got := p.stat(1, "new"); got != messages {
		t.Errorf("the retried sync shows %d new messages, the server holds %d", got, messages)
	}
	var done taskJSON
	api(t, survivor.url, token, "GET", "/api/sync/tasks/"+started.Task.ID, &done)
	if done.State != "succeeded" || done.Error != "" {
		t.Errorf("the killed worker's task is %s (%q), want its retry succeeded", done.State, done.Error)
	}
}
