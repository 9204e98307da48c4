package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/oauthtest"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

// syncBuffer is an output the test reads while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a command line running in-process.
type running struct {
	out, err syncBuffer
	done     chan int
}

func start(args ...string) *running {
	r := &running{done: make(chan int, 1)}
	go func() { r.done <- run(context.Background(), args, strings.NewReader(""), &r.out, &r.err) }()
	return r
}

// waitOutput waits for re in the command's stdout and returns its first submatch.
func (r *running) waitOutput(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(r.out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-r.done:
			t.Fatalf("the command ended (%d) before printing %s: %s %s", code, re, r.out.String(), r.err.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %s in the output: %q", re, r.out.String())
	return ""
}

func (r *running) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		return code
	case <-time.After(time.Minute):
		t.Fatal("the command did not end")
		return 0
	}
}

// TestAccountAddOAuth adds accounts from the CLI as on a headless server: with the device grant
// (the test approves the code through the provider's API) and with the loopback redirect (the
// test opens the printed address and consents), then syncs one. A denied device code and a
// sign-in nobody finishes in time save nothing.
func TestAccountAddOAuth(t *testing.T) {
	prov := oauthtest.Start(t)
	d := imaptest.StartDovecot(t, imaptest.WithOAuth2(prov.IntrospectionURL()))
	ivan := d.AddUser(t, "ivan@example.test", "unused")
	d.WriteMailgen(t, ivan, mailgen.Options{Seed: 2, Messages: 60})
	d.AddUser(t, "judy@example.test", "unused")
	// Dovecot re-reads its passwd-file when its modification time changes: users added within one
	// second of its last read are seen once a later second's write changes it again.
	time.Sleep(1100 * time.Millisecond)
	d.AddUser(t, "late", "unused")

	dir := t.TempDir()
	providers := []map[string]any{
		{"name": "testdev", "label": "Test (device)", "client_id": prov.ClientID, "client_secret": prov.ClientSecret,
			"issuer": prov.URL(), "device_grant": true, "imap_host": d.Host(), "imap_port": d.Port(), "imap_tls": "none"},
		{"name": "testweb", "label": "Test (browser)", "client_id": prov.ClientID, "client_secret": prov.ClientSecret,
			"issuer": prov.URL(), "imap_host": d.Host(), "imap_port": d.Port(), "imap_tls": "none"},
	}
	file := filepath.Join(dir, "providers.json")
	data, _ := json.Marshal(providers)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, dsn, true)
	if _, err := s.CreateUser(context.Background(), "owner@example.test", "x", false); err != nil {
		t.Fatal(err)
	}
	base := []string{"--db", dsn, "--data-dir", dir, "--oauth-providers", file}
	add := func(provider, name string, extra ...string) *running {
		return start(append(append(clone(base), "account", "add", "--user", "owner@example.test", "--name", name, "--oauth", provider), extra...)...)
	}
	accounts := func() []store.Account {
		t.Helper()
		as, err := s.Accounts(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	codeRe := regexp.MustCompile(`enter the code (\S+)`)

	t.Run("device grant", func(t *testing.T) {
		r := add("testdev", "ivan")
		code := r.waitOutput(t, codeRe)
		resp, err := http.PostForm(prov.URL()+"/device/approve", url.Values{"user_code": {code}, "username": {"ivan@example.test"}})
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("approve: %v %v", resp, err)
		}
		resp.Body.Close()
		if c := r.wait(t); c != 0 || !strings.Contains(r.out.String(), `"ivan" added: ivan@example.test`) {
			t.Fatalf("account add --oauth: %d %q %q", c, r.out.String(), r.err.String())
		}
		as := accounts()
		if len(as) != 1 || !as[0].IsOAuth2() || as[0].OAuthProvider != "testdev" {
			t.Fatalf("accounts: %+v", as)
		}
		if code, out, stderr := mailsync(t, append(clone(base), "sync", "ivan", "--json")...); code != 0 || !strings.Contains(out, `"succeeded"`) {
			t.Fatalf("sync of the OAuth2 account: %d %s %s", code, out, stderr)
		}
	})
	t.Run("device code denied", func(t *testing.T) {
		r := add("testdev", "denied")
		code := r.waitOutput(t, codeRe)
		if !prov.Approve(code, "ivan@example.test", true) {
			t.Fatal("no such user code")
		}
		if c := r.wait(t); c == 0 || !strings.Contains(r.err.String(), "nothing saved") {
			t.Fatalf("denied: %d %q", c, r.err.String())
		}
		if n := len(accounts()); n != 1 {
			t.Fatalf("%d accounts after a denied sign-in", n)
		}
	})
	t.Run("loopback redirect", func(t *testing.T) {
		r := add("testweb", "judy", "--login", "judy@example.test")
		consent := r.waitOutput(t, regexp.MustCompile(`(http://\S+/authorize\?\S+)`))
		u, err := url.Parse(consent)
		if err != nil {
			t.Fatal(err)
		}
		if redirect := u.Query().Get("redirect_uri"); !strings.HasPrefix(redirect, "http://127.0.0.1:") {
			t.Fatalf("redirect URI %q is not a loopback listener", redirect)
		}
		page, err := http.Get(consent)
		if err != nil || page.StatusCode != http.StatusOK {
			t.Fatalf("consent page: %v %v", page, err)
		}
		page.Body.Close()
		form := u.Query()
		form.Set("username", "judy@example.test")
		form.Set("decision", "approve")
		resp, err := http.PostForm(prov.AuthURL(), form) // follows the redirect to the listener
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if !strings.Contains(body.String(), "Signed in") {
			t.Errorf("the listener answered %q", body.String())
		}
		if c := r.wait(t); c != 0 || !strings.Contains(r.out.String(), `"judy" added: judy@example.test`) {
			t.Fatalf("account add --oauth (loopback): %d %q %q", c, r.out.String(), r.err.String())
		}
		if n := len(accounts()); n != 2 {
			t.Fatalf("%d accounts, want 2", n)
		}
	})
	t.Run("nobody signs in", func(t *testing.T) {
		r := add("testweb", "late", "--oauth-timeout", "1s")
		r.waitOutput(t, regexp.MustCompile(`(http://\S+/authorize\?\S+)`))
		if c := r.wait(t); c == 0 || !strings.Contains(r.err.String(), "not finished in time") || !strings.Contains(r.err.String(), "nothing saved") {
			t.Fatalf("timeout: %d %q", c, r.err.String())
		}
		if n := len(accounts()); n != 2 {
			t.Fatalf("%d accounts after a timed-out sign-in", n)
		}
	})
	t.Run("unconfigured provider", func(t *testing.T) {
		code, _, stderr := mailsync(t, append(clone(base), "account", "add", "--user", "owner@example.test", "--name", "g", "--oauth", "google")...)
		if code == 0 || !strings.Contains(stderr, "--oauth-google-client-id") {
			t.Fatalf("google without credentials: %d %q", code, stderr)
		}
	})

}

func clone(s []string) []string { return append([]string(nil), s...) }
