package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailsync/internal/instance/instancetest"
)

// readmeDemoCommand is the first command of the README, which must start the demo.
func readmeDemoCommand(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "go run "); ok && strings.HasPrefix(line, "    ") {
			args := append([]string{"run"}, strings.Fields(cmd)...)
			if want := "go run ./cmd/mailsync serve --demo"; "go "+strings.Join(args, " ") != want {
				t.Fatalf("the README's first command is %q, want %q", "go "+strings.Join(args, " "), want)
			}
			return args
		}
	}
	t.Fatal("the README has no go run command")
	return nil
}

// demoRun is `go run ./cmd/mailsync serve --demo` running in its own process group.
type demoRun struct {
	cmd              *exec.Cmd
	url, email, pass string
	messages         int
	stderr           *instancetest.LogBuffer
	exited           chan struct{} // closed when the process has ended, with waitErr set
	waitErr          error
	stopOnce         sync.Once
}

var (
	openRE     = regexp.MustCompile(`^\s*open\s+(http://\S+)`)
	signInRE   = regexp.MustCompile(`^\s*sign in\s+(\S+)\s+/\s+(\S+)`)
	generateRE = regexp.MustCompile(`(\d+) generated messages`)
)

// startDemo runs the command from the repository root with its data in dir, on a free loopback
// port (MAILSYNC_ADDR, so the command line stays the README's), and reads its banner.
func startDemo(t *testing.T, root, dir string, args []string) *demoRun {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "MAILSYNC_ADDR=127.0.0.1:0", "MAILSYNC_DATA_DIR="+dir,
		"MAILSYNC_DB=sqlite:"+filepath.Join(dir, "mailsync.db"), "MAILSYNC_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // go run's child is in the group too
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &demoRun{cmd: cmd, stderr: &instancetest.LogBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })

	banner := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := generateRE.FindStringSubmatch(line); m != nil {
				if _, err := fmt.Sscan(m[1], &d.messages); err != nil {
					d.messages = -1 // the banner changed: the test's count check reports it
				}
			}
			if m := openRE.FindStringSubmatch(line); m != nil {
				d.url = m[1]
			}
			if m := signInRE.FindStringSubmatch(line); m != nil {
				d.email, d.pass = m[1], m[2]
				close(banner)
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
	}()
	select {
	case <-banner:
	case <-d.exited:
		t.Fatalf("the demo exited before it was ready: %v\n%s", d.waitErr, d.stderr)
	case <-time.After(3 * time.Minute): // a cold build cache compiles everything first
		t.Fatalf("no demo banner after 3 minutes\n%s", d.stderr)
	}
	if d.url == "" || d.messages < 1000 {
		t.Fatalf("demo banner: url %q, %d messages", d.url, d.messages)
	}
	return d
}

// stop interrupts the demo as Ctrl-C would, and waits for it to end.
func (d *demoRun) stop(t *testing.T) {
	d.stopOnce.Do(func() {
		select {
		case <-d.exited:
			return
		default:
		}
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
			t.Errorf("the demo did not stop within 20 s of SIGINT\n%s", d.stderr)
		}
	})
}

func TestDemoAsTheREADMEWritesIt(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	args := readmeDemoCommand(t, root)
	dir := t.TempDir()
	browser := newBrowser(t)

	// Twice on the same data: the second start must find its user and account again.
	for run := 1; run <= 2; run++ {
		d := startDemo(t, root, dir, args)
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
		p := &page{t: t, ctx: ctx}
		p.do(chromedp.Navigate(d.url+"/"),
			chromedp.WaitVisible(chromedp.CSS(`#login-form input[name=email]`)),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name=email]`), d.email),
			chromedp.SendKeys(chromedp.CSS(`#login-form input[name=password]`), d.pass),
			chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)))
		p.waitFor("the demo account", `document.querySelectorAll('section.account').length > 0`, 30*time.Second)
		if n := eval[int](p, `document.querySelectorAll('section.account').length`); n != 1 {
			t.Fatalf("run %d: %d accounts on the page, want the one demo account", run, n)
		}
		before := eval[string](p, `document.querySelector('section.account').dataset.taskId`)
		p.do(chromedp.Click(chromedp.CSS(`section.account button[data-action=sync]`)))
		p.waitFor("the demo sync", fmt.Sprintf(`(c => c.dataset.state === 'succeeded' && c.dataset.taskId !== %q)(document.querySelector('section.account'))`, before), time.Minute)
		newOnes := eval[string](p, `document.querySelector('section.account [data-stat=new]').textContent`)
		total := eval[string](p, `document.querySelector('section.account [data-stat=total]').textContent`)
		t.Logf("run %d: demo sync done: new %s, messages %s", run, newOnes, total)
		// The first sync copies everything; the second finds the same mailbox (same seed, same
		// UIDVALIDITY) and has nothing to do.
		want := map[int]string{1: fmt.Sprint(d.messages), 2: "0"}[run]
		if digits(newOnes) != want || digits(total) != want {
			t.Errorf("run %d: the page shows %s new of %s messages, want %s", run, newOnes, total, want)
		}
		if run == 1 {
			p.screenshot("demo-after-sync")
		}
		cancelTimeout()
		cancel()
		d.stop(t)
	}
}

func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
