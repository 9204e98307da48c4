package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/imaptest"
	"mailsync/internal/instance"
	"mailsync/internal/netpolicy"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// realLoginEnv is an env whose login check is the real sync engine, against real servers.
func realLoginEnv(t *testing.T, dialect string, opts syncer.Options, tweak ...func(*instance.Config)) *env {
	return newEnv(t, dialect, append([]func(*instance.Config){func(c *instance.Config) {
		c.Login = syncer.New(c.Store, boxOf(t, c), opts)
	}}, tweak...)...)
}

// TestNewDestinationNeedsThePassword: a PATCH that points an account at another host, port, TLS
// mode or certificate check without the password is refused, and the stored password never
// reaches the new destination (a recording server sees no connection at all).
func TestNewDestinationNeedsThePassword(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		mem := imaptest.StartMemServer(t)
		const stored = "the-stored-imap-password"
		if _, err := mem.AddUser("bob", stored); err != nil {
			t.Fatal(err)
		}
		hostile := imaptest.StartRecorder(t, false)
		e := realLoginEnv(t, dialect, syncer.Options{})
		var a httpapi.AccountJSON
		e.request(e.admin, "POST", "/api/accounts", map[string]any{
			"name": "mem", "imap_host": mem.Host(), "imap_port": mem.Port(), "tls_mode": "none", "login": "bob", "password": stored,
		}).want(t, 201).json(t, &a)
		acct := fmt.Sprintf("/api/accounts/%d", a.ID)

		for _, change := range []map[string]any{
			{"imap_port": hostile.Port()},
			{"imap_host": "localhost", "imap_port": hostile.Port()},
			{"imap_host": "localhost"},
			{"tls_mode": "tls"},
			{"tls_skip_verify": true},
		} {
			e.request(e.admin, "PATCH", acct, change).wantProblem(t, http.StatusUnprocessableEntity)
		}
		if n := hostile.Connections(); n != 0 {
			t.Fatalf("the new destination got %d connections without a password being sent", n)
		}

		// With the password it is tried there, and only the password given travels.
		e.request(e.admin, "PATCH", acct, map[string]any{"imap_port": hostile.Port(), "password": "a-new-password"}).wantProblem(t, http.StatusUnprocessableEntity)
		if !hostile.Received("a-new-password") || hostile.Received(stored) {
			t.Fatalf("the recorder got %q; want the new password and never the stored one", hostile.Lines())
		}
		// Nothing changed: the account still points at its server, and still logs in there.
		var now httpapi.AccountJSON
		e.request(e.admin, "GET", acct, nil).want(t, 200).json(t, &now)
		if now.IMAPPort != mem.Port() {
			t.Fatalf("a refused change was saved: %+v", now)
		}
		e.request(e.admin, "PATCH", acct, map[string]any{"login": "bob", "name": "renamed"}).want(t, 200)
	})
}

// allowLoopback is an operator's allow-list for test servers on loopback.
func allowLoopback(t testing.TB) *netpolicy.Policy {
	p, err := netpolicy.New([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// problemDetail reads a problem document's detail.
func problemDetail(t *testing.T, r response) string {
	t.Helper()
	var p struct {
		Detail string `json:"detail"`
	}
	r.json(t, &p)
	return p.Detail
}

// TestDestinationPolicy: a user who is not an administrator cannot point an account at loopback
// (by address or by a name that resolves there) or a private range; the refused destination gets
// no connection at all. An administrator can; so can a user once the operator allowed it.
func TestDestinationPolicy(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		rec := imaptest.StartRecorder(t, false)
		mem := imaptest.StartMemServer(t)
		if _, err := mem.AddUser("bob", imapPassword); err != nil {
			t.Fatal(err)
		}
		e := realLoginEnv(t, dialect, syncer.Options{})
		body := func(name, host string, port int) map[string]any {
			return map[string]any{"name": name, "imap_host": host, "imap_port": port, "tls_mode": "none", "login": "bob", "password": imapPassword}
		}
		for _, host := range []string{"127.0.0.1", "localhost", "127.1.2.3", "10.0.0.1", "169.254.169.254"} {
			r := e.request(e.alice, "POST", "/api/accounts", body(host, host, rec.Port()))
			r.wantProblem(t, http.StatusUnprocessableEntity)
			if d := problemDetail(t, r); !strings.Contains(d, "operator decides") || strings.Contains(d, "resolves") {
				t.Errorf("%s: detail %q, want the generic refusal", host, d)
			}
		}
		if n := rec.Connections(); n != 0 {
			t.Fatalf("refused destinations got %d connections", n)
		}
		if !strings.Contains(e.logs.String(), "localhost resolves to") {
			t.Error("the operator's log does not say what was refused")
		}

		// An administrator may use any destination; the account records that the policy does not apply.
		var a httpapi.AccountJSON
		e.request(e.admin, "POST", "/api/accounts", body("mem", "localhost", mem.Port())).want(t, 201).json(t, &a)
		if acct, err := e.store.Account(context.Background(), a.ID); err != nil || acct.Restricted {
			t.Fatalf("the admin's account: %+v %v, want unrestricted", acct, err)
		}

		// Under an allow-list, alice may; her account is restricted, and a connect failure is told
		// to her in general terms, in detail to the log.
		e2 := realLoginEnv(t, dialect, syncer.Options{Destinations: allowLoopback(t)})
		e2.request(e2.alice, "POST", "/api/accounts", body("mem", "localhost", mem.Port())).want(t, 201).json(t, &a)
		if acct, err := e2.store.Account(context.Background(), a.ID); err != nil || !acct.Restricted {
			t.Fatalf("alice's account: %+v %v, want restricted", acct, err)
		}
		closed := closedPort(t)
		r := e2.request(e2.alice, "POST", "/api/accounts", body("closed", "127.0.0.1", closed))
		r.wantProblem(t, http.StatusUnprocessableEntity)
		if d := problemDetail(t, r); strings.Contains(d, "refused") || !strings.Contains(d, "could be reached") {
			t.Errorf("closed port as alice: %q, want the generic text", d)
		}
		if !strings.Contains(e2.logs.String(), "connection refused") {
			t.Error("the operator's log lacks the connect failure's detail")
		}
		r = e2.request(e2.admin, "POST", "/api/accounts", body("closed", "127.0.0.1", closed))
		if d := problemDetail(t, r); !strings.Contains(d, "connection refused") {
			t.Errorf("closed port as admin: %q, want the detail", d)
		}

		// Who points an account at a new host decides: an admin's account stays unrestricted only
		// while an admin changes it.
		var b httpapi.AccountJSON
		e2.request(e2.admin, "POST", "/api/accounts", body("admins", "localhost", mem.Port())).want(t, 201).json(t, &b)
		e2.request(e2.admin, "PATCH", fmt.Sprintf("/api/accounts/%d", b.ID), map[string]any{"imap_host": "127.0.0.1", "password": imapPassword}).want(t, 200)
		if acct, _ := e2.store.Account(context.Background(), b.ID); acct.Restricted {
			t.Fatal("an admin's change made the account restricted")
		}
		e2.request(e2.alice, "PATCH", fmt.Sprintf("/api/accounts/%d", a.ID), map[string]any{"imap_host": "127.0.0.1", "password": imapPassword}).want(t, 200)
		if acct, _ := e2.store.Account(context.Background(), a.ID); !acct.Restricted {
			t.Fatal("alice's change left the account unrestricted")
		}
	})
}

// TestDestinationPolicyAtEverySync: the policy is checked again when a restricted account syncs,
// so an account saved under a looser policy (or a name that now resolves elsewhere) is refused,
// and the task's error is the generic text.
func TestDestinationPolicyAtEverySync(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		rec := imaptest.StartRecorder(t, false)
		e := newEnv(t, dialect, func(c *instance.Config) { withBody(c, syncer.New(c.Store, boxOf(t, c), syncer.Options{}).Run) })
		mine := e.runWorkers(t)
		a := e.storeAccount(t, e.alice, "localhost", rec.Port(), imapPassword, true)
		final := e.syncToEnd(t, e.alice, a.ID)
		if final.State != "failed" || !strings.Contains(final.Error, "operator decides") || strings.Contains(final.Error, "127.0.0.1") {
			t.Fatalf("sync of a refused destination: %s %q, want failed with the generic text", final.State, final.Error)
		}
		if n := rec.Connections(); n != 0 {
			t.Fatalf("the refused destination got %d connections at sync time", n)
		}
		// The same destination on an unrestricted account (the operator's) is tried.
		b := e.storeAccount(t, e.admin, "localhost", rec.Port(), imapPassword, false)
		if final := e.syncToEnd(t, e.admin, b.ID); final.State != "failed" || rec.Connections() == 0 {
			t.Fatalf("the operator's account: %s %q after %d connections", final.State, final.Error, rec.Connections())
		}
		mine()
	})
}

// TestEchoedLoginNeverLeaks: an IMAP server that quotes the LOGIN line, password included, in its
// refusal: after a real sync against it, the password is in no log line, task error, API answer
// or health view.
func TestEchoedLoginNeverLeaks(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		echo := imaptest.StartRecorder(t, true)
		e := newEnv(t, dialect, func(c *instance.Config) { withBody(c, syncer.New(c.Store, boxOf(t, c), syncer.Options{}).Run) })
		stop := e.runWorkers(t)
		defer stop()
		for _, pw := range []string{imapPassword, `quo"ted\pass-word`, "ab"} {
			a := e.storeAccount(t, e.admin, "127.0.0.1", echo.Port(), pw, false)
			final := e.syncToEnd(t, e.admin, a.ID)
			if final.State != "failed" || !strings.Contains(final.Error, "authentication failed") {
				t.Fatalf("sync against the echoing server: %s %q", final.State, final.Error)
			}
			if !echo.Received("LOGIN") {
				t.Fatal("the server got no LOGIN: the test proves nothing")
			}
			var seen []string
			for _, r := range []response{
				e.request(e.admin, "GET", "/api/sync/tasks/"+final.ID, nil),
				e.request(e.admin, "GET", fmt.Sprintf("/api/accounts/%d", a.ID), nil),
				e.request(e.admin, "GET", "/api/accounts", nil),
				e.request(e.admin, "GET", "/api/health/sync/detailed", nil),
				e.request(e.admin, "GET", "/api/health/sync", nil),
			} {
				seen = append(seen, string(r.want(t, 200).body))
			}
			seen = append(seen, final.Error, e.logs.String())
			for i, text := range seen {
				if len(pw) >= 6 && (strings.Contains(text, pw) || strings.Contains(text, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(pw))) {
					t.Fatalf("text %d holds the password %q: %.400s", i, pw, text)
				}
				if strings.Contains(text, "refused: ") {
					t.Fatalf("text %d holds the server's answer to LOGIN: %.400s", i, text)
				}
			}
		}
	})
}

// closedPort returns a loopback port nobody listens on.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// storeAccount writes an account of u straight into the store, as the CLI or an older policy
// could have: the API would test the login first.
func (e *env) storeAccount(t *testing.T, u user, host string, port int, password string, restricted bool) store.Account {
	t.Helper()
	a := store.Account{UserID: u.ID, Name: fmt.Sprintf("%s:%d/%d", host, port, time.Now().UnixNano()), IMAPHost: host, IMAPPort: port,
		TLSMode: "none", Login: "bob", Restricted: restricted}
	a.SecretEnc = e.box.Seal([]byte(password), secret.AccountContext(a.Login, a.IMAPHost))
	a, err := e.store.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// syncToEnd starts a sync through the API and waits, at most 15 s, for its end.
func (e *env) syncToEnd(t *testing.T, u user, accountID int64) httpapi.TaskJSON {
	t.Helper()
	st := e.startSync(u, accountID)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var tk httpapi.TaskJSON
		e.request(u, "GET", "/api/sync/tasks/"+st.Task.ID, nil).want(t, 200).json(t, &tk)
		if tk.State != "queued" && tk.State != "running" {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after 15 s", tk.ID, tk.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
