package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/changes/changestest"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

const mainEnv = "MAILSYNC_TEST_RUN_MAIN"

// TestMain doubles as the mailsync binary: with mainEnv set, the test binary runs the command line
// it was given, exactly as main does, so the tests can kill a real server process.
func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// startServer runs `mailsync ARGS` as a separate process, killed when the test ends.
func startServer(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// apiClient talks to a server with a bearer token.
type apiClient struct {
	base, token string
}

func (c apiClient) do(t *testing.T, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0 // not up (yet, or any more)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0 // a half-written answer: not up (yet, or any more)
		}
	}
	return resp.StatusCode
}

func (c apiClient) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c.do(t, http.MethodGet, "/readyz", nil) == http.StatusOK {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the server did not become ready")
}

// TestKilledServerIsRepairedAndResumed kills a real `mailsync serve` process with SIGKILL in the
// middle of a first sync. `repair` reports the dead task and hands it back to the queue; the next
// server finishes it from the checkpoint, and the store holds every message once.
func TestKilledServerIsRepairedAndResumed(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		const messages = 6000
		dovecot := imaptest.StartDovecot(t)
		u := dovecot.AddUser(t, "carol", "carol-imap-pw")
		dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 5, Messages: messages})

		dsn := storetest.DSN(t, d)
		common := []string{"--db", dsn, "--data-dir", t.TempDir(),
			// Short enough to wait for, long enough that one batch commit on a loaded machine
			// does not outlast the self-fence.
			"--heartbeat-interval=500ms", "--heartbeat-timeout=5s", "--self-fence=3500ms"}
		must := func(stdin string, args ...string) string {
			t.Helper()
			code, out, stderr := mailsyncIn(t, stdin, append(append([]string{}, common...), args...)...)
			if code != 0 {
				t.Fatalf("mailsync %s: %s", strings.Join(args, " "), stderr)
			}
			return out
		}
		must("a-long-password\n", "user", "add", "carol@example.test", "--password-stdin")
		must(u.Password+"\n", "account", "add", "--user", "carol@example.test", "--name", "mail",
			"--imap-url", "imap://"+u.Login+"@"+dovecot.Addr(), "--tls", "none", "--password-stdin")
		token := strings.TrimSpace(must("", "token", "create", "carol@example.test"))

		// The first server never reaps, so the dead task waits for the operator.
		addr := freeAddr(t)
		api := apiClient{base: "http://" + addr, token: token}
		first := startServer(t, append(append([]string{}, common...), "--reap-interval=1h", "serve", "--addr", addr)...)
		api.waitReady(t)
		var started struct{ Task task.View }
		if code := api.do(t, http.MethodPost, "/api/accounts/1/sync", &started); code != http.StatusAccepted {
			t.Fatalf("POST sync: %d", code)
		}
		id := started.Task.ID
		for {
			var v task.View
			api.do(t, http.MethodGet, "/api/sync/tasks/"+id, &v)
			if v.State == task.Succeeded {
				t.Fatal("the sync finished before it could be killed: make the corpus bigger")
			}
			if v.State == task.Running && v.Progress.MessagesDone > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		_ = first.Process.Kill()
		_ = first.Wait()

		out := must("", "repair")
		if !strings.Contains(out, "nothing to repair") {
			t.Fatalf("repair before the timeout changed something:\n%s", out)
		}
		time.Sleep(5100 * time.Millisecond)
		out = must("", "repair")
		if !strings.Contains(out, id) || !strings.Contains(out, "now queued") {
			t.Fatalf("repair did not report the dead task %s:\n%s", id, out)
		}

		second := startServer(t, append(append([]string{}, common...), "serve", "--addr", addr)...)
		api.waitReady(t)
		deadline := time.Now().Add(60 * time.Second)
		var v task.View
		for v.State != task.Succeeded {
			if time.Now().After(deadline) {
				t.Fatalf("the resumed sync did not finish: %+v", v)
			}
			time.Sleep(50 * time.Millisecond)
			api.do(t, http.MethodGet, "/api/sync/tasks/"+id, &v)
			if v.State == task.Failed || v.State == task.Cancelled {
				t.Fatalf("the resumed sync ended %s: %s", v.State, v.Error)
			}
		}
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()

		s := storetest.OpenDSN(t, dsn, false)
		var stored, distinct int
		if err := s.DB().QueryRow(`SELECT count(*), count(DISTINCT message_id) FROM messages`).Scan(&stored, &distinct); err != nil {
			t.Fatal(err)
		}
		if stored != messages || distinct != messages {
			t.Fatalf("the store holds %d messages (%d distinct), the server %d", stored, distinct, messages)
		}
		// The change log of the killed and resumed task replays to exactly the store: every
		// message created once (none lost with the killed process, none repeated by the resume),
		// and one end for the one task.
		created, ends := 0, 0
		for _, c := range changestest.Check(t, s, 1) {
			switch c.Kind {
			case changes.MessageCreated:
				created++
			case changes.SyncSucceeded, changes.SyncFailed:
				ends++
			}
		}
		if created != messages || ends != 1 {
			t.Fatalf("change log: %d message.created (want %d), %d task ends (want 1)", created, messages, ends)
		}
	})
}

// TestIdlePushSyncsNewMail runs `mailsync serve --idle`: mail delivered to the INBOX is copied
// without anyone pressing Sync now, including mail that arrives while a sync runs.
func TestIdlePushSyncsNewMail(t *testing.T) {
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "erin", "erin-imap-pw")
	dsn := storetest.DSN(t, "sqlite")
	common := []string{"--db", dsn, "--data-dir", t.TempDir()}
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"a-long-password\n", []string{"user", "add", "erin@example.test", "--password-stdin"}},
		{u.Password + "\n", []string{"account", "add", "--user", "erin@example.test", "--name", "mail",
			"--imap-url", "imap://" + u.Login + "@" + dovecot.Addr(), "--tls", "none", "--password-stdin"}},
	} {
		if code, _, stderr := mailsyncIn(t, c.stdin, append(append([]string{}, common...), c.args...)...); code != 0 {
			t.Fatal(stderr)
		}
	}
	startServer(t, append(append([]string{}, common...), "serve", "--idle", "--addr", freeAddr(t))...)

	s := storetest.OpenDSN(t, dsn, false)
	stored := func() int {
		var n int
		if err := s.DB().QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Deliver until the first copy happens without a click (the very first message may land before
	// the watch is up, a change nobody sees), then a burst that arrives while syncs run.
	client := dovecot.Client(t, u)
	delivered := 0
	deadline := time.Now().Add(30 * time.Second)
	for stored() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages delivered, none copied without a click", delivered)
		}
		client.AddMessage("INBOX", mailgen.Message(21, delivered))
		delivered++
		time.Sleep(500 * time.Millisecond)
	}
	for range 5 {
		client.AddMessage("INBOX", mailgen.Message(21, delivered))
		delivered++
		time.Sleep(20 * time.Millisecond)
	}
	for stored() != delivered {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages delivered, %d copied without a click", delivered, stored())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
