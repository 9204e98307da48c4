package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

func TestParseIMAPURL(t *testing.T) {
	cases := []struct {
		url, tls  string
		wantLogin string
		wantHost  string
		wantPort  int
		wantTLS   string
		wantErr   string
	}{
		{url: "imaps://bob@mail.example", wantLogin: "bob", wantHost: "mail.example", wantPort: 993, wantTLS: "tls"},
		{url: "imap://bob%40example.org@mail.example:1143", wantLogin: "bob@example.org", wantHost: "mail.example", wantPort: 1143, wantTLS: "starttls"},
		{url: "imap://bob@127.0.0.1:10143", tls: "none", wantLogin: "bob", wantHost: "127.0.0.1", wantPort: 10143, wantTLS: "none"},
		{url: "imap://[::1]:143", wantErr: "LOGIN@HOST"},
		{url: "http://bob@mail.example", wantErr: "scheme"},
		{url: "imap://bob:hunter2@mail.example", wantErr: "must not carry a password"},
		{url: "imap://bob@mail.example:99999", wantErr: "bad port"},
	}
	for _, tc := range cases {
		a, err := parseIMAPURL(tc.url, tc.tls)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if a.Login != tc.wantLogin || a.IMAPHost != tc.wantHost || a.IMAPPort != tc.wantPort || a.TLSMode != tc.wantTLS {
			t.Errorf("%s: got %s@%s:%d %s", tc.url, a.Login, a.IMAPHost, a.IMAPPort, a.TLSMode)
		}
	}
}

func TestAccountAddTestsLoginFirst(t *testing.T) {
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "alice", "correct horse")
	dsn := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, dsn, true)
	if _, err := s.CreateUser(context.Background(), "alice@example.test", "x", false); err != nil {
		t.Fatal(err)
	}
	base := []string{"--db", dsn, "--data-dir", t.TempDir(), "account", "add", "--user", "alice@example.test",
		"--name", "work", "--imap-url", "imap://" + u.Login + "@" + dovecot.Addr(), "--tls", "none", "--password-stdin"}

	code, _, stderr := mailsyncIn(t, "wrong password\n", base...)
	if code == 0 || !strings.Contains(stderr, "nothing saved") || !strings.Contains(stderr, "authentication failed") {
		t.Fatalf("wrong password: code %d, stderr %q", code, stderr)
	}
	if accounts, _ := s.Accounts(context.Background(), 0); len(accounts) != 0 {
		t.Fatalf("a failed login saved %d accounts", len(accounts))
	}

	code, out, stderr := mailsyncIn(t, u.Password+"\n", base...)
	if code != 0 || !strings.Contains(out, `"work" added`) {
		t.Fatalf("account add: code %d, out %q, err %q", code, out, stderr)
	}
	accounts, err := s.Accounts(context.Background(), 0)
	if err != nil || len(accounts) != 1 {
		t.Fatalf("accounts %v %v", accounts, err)
	}
	if bytes.Contains(accounts[0].SecretEnc, []byte(u.Password)) {
		t.Fatal("the IMAP password is stored in the clear")
	}
	code, out, _ = mailsyncIn(t, "", "--db", dsn, "account", "list")
	if code != 0 || !strings.Contains(out, "work") || strings.Contains(out, u.Password) {
		t.Fatalf("account list: %d %q", code, out)
	}
	code, _, stderr = mailsyncIn(t, "", base...)
	if code == 0 || !strings.Contains(stderr, "nothing on stdin") {
		t.Fatalf("no password on stdin: %d %q", code, stderr)
	}
}

// TestSyncCommand runs `mailsync sync` against a real Dovecot: --json prints the final task, a
// second run finds nothing new, and a sync that cannot log in exits non-zero with the reason.
func TestSyncCommand(t *testing.T) {
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "dave", "dave-imap-pw")
	stats := dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 9, Messages: 300})
	dsn := storetest.DSN(t, "sqlite")
	common := []string{"--db", dsn, "--data-dir", t.TempDir()}
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return mailsyncIn(t, stdin, append(append([]string{}, common...), args...)...)
	}
	if code, _, stderr := run("a-long-password\n", "user", "add", "dave@example.test", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := run(u.Password+"\n", "account", "add", "--user", "dave@example.test", "--name", "mail",
		"--imap-url", "imap://"+u.Login+"@"+dovecot.Addr(), "--tls", "none", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}

	code, out, stderr := run("", "sync", "mail", "--json")
	if code != 0 {
		t.Fatalf("sync: %d %s", code, stderr)
	}
	var v task.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if v.State != task.Succeeded || v.Progress.New != stats.Messages || v.Percent != 100 || v.Live {
		t.Fatalf("final task %+v, want succeeded with %d new", v, stats.Messages)
	}

	code, out, _ = run("", "sync", "mail")
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, " 0 new") {
		t.Fatalf("second sync: %d %q", code, out)
	}
	code, out, _ = run("", "status")
	if code != 0 || !strings.Contains(out, "mail") || !strings.Contains(out, "succeeded") {
		t.Fatalf("status: %d %q", code, out)
	}

	// A frozen server: the IMAP timeouts of the flags reach the CLI's sync, which fails at the
	// configured dial timeout (the greeting never comes) instead of the 15 s default.
	dovecot.Pause(t)
	frozen := time.Now()
	code, _, stderr = run("", "sync", "mail", "--imap-dial-timeout", "1s", "--imap-command-timeout", "1s")
	took := time.Since(frozen)
	dovecot.Resume(t)
	if code == 0 || !strings.Contains(stderr, "greeting within 1s") {
		t.Fatalf("sync of a frozen server: %d %q, want the 1 s dial timeout", code, stderr)
	}
	if took > 8*time.Second {
		t.Fatalf("sync of a frozen server took %v with a 1 s dial timeout", took)
	}

	// The login changed behind mailsync's back, so the sealed password no longer opens (it is bound
	// to login and host): the sync fails, says why, and exits non-zero.
	if _, err := storetest.OpenDSN(t, dsn, false).DB().Exec(`UPDATE accounts SET login = 'nobody'`); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run("", "sync", "mail")
	if code == 0 || !strings.Contains(stderr, "failed") || !strings.Contains(stderr, "password") {
		t.Fatalf("sync with a broken login: %d %q", code, stderr)
	}
}

// TestAccountEditNeedsThePasswordForANewDestination: the stored password never follows a
// changed server, port or TLS mode; given again, only the new one travels.
func TestAccountEditNeedsThePasswordForANewDestination(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		mem := imaptest.StartMemServer(t)
		const stored = "the-stored-imap-password"
		if _, err := mem.AddUser("bob", stored); err != nil {
			t.Fatal(err)
		}
		hostile := imaptest.StartRecorder(t, false)
		dsn := storetest.DSN(t, d)
		s := storetest.OpenDSN(t, dsn, true)
		if _, err := s.CreateUser(context.Background(), "bob@example.test", "x", false); err != nil {
			t.Fatal(err)
		}
		global := []string{"--db", dsn, "--data-dir", t.TempDir()}
		memURL := "imap://bob@" + mem.Addr()
		if code, _, errOut := mailsyncIn(t, stored+"\n", append(global, "account", "add", "--user", "bob@example.test", "--name", "mem",
			"--imap-url", memURL, "--tls", "none", "--password-stdin")...); code != 0 {
			t.Fatalf("account add: %s", errOut)
		}
		hostileURL := "imap://bob@" + hostile.Host() + ":" + strconv.Itoa(hostile.Port())
		for _, args := range [][]string{
			{"--imap-url", hostileURL, "--tls", "none"},
			{"--tls", "tls"},
			{"--tls-skip-verify"},
		} {
			code, _, errOut := mailsync(t, append(append(global, "account", "edit", "mem"), args...)...)
			if code == 0 || !strings.Contains(errOut, "needs the password again") {
				t.Fatalf("edit %v without a password: %d %q", args, code, errOut)
			}
		}
		if n := hostile.Connections(); n != 0 {
			t.Fatalf("the new destination got %d connections", n)
		}
		code, _, errOut := mailsyncIn(t, "a-new-password\n", append(global, "account", "edit", "mem", "--imap-url", hostileURL, "--tls", "none", "--password-stdin")...)
		if code == 0 || !strings.Contains(errOut, "nothing saved") {
			t.Fatalf("edit to the refusing server: %d %q", code, errOut)
		}
		if !hostile.Received("a-new-password") || hostile.Received(stored) {
			t.Fatalf("the recorder got %q; want the new password and never the stored one", hostile.Lines())
		}
		code, out, errOut := mailsync(t, append(global, "account", "edit", "mem", "--name", "renamed", "--sync-interval", "1h")...)
		if code != 0 || !strings.Contains(out, `"renamed": bob@127.0.0.1:`+strconv.Itoa(mem.Port())) {
			t.Fatalf("rename: %d %q %q", code, out, errOut)
		}
	})
}
