package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"mailsync/internal/imaptest"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// realLoginEnv is an env whose login check is the real sync engine, against real servers.
func realLoginEnv(t *testing.T, dialect string, opts syncer.Options, tweak ...func(*Config)) *env {
	return newEnv(t, dialect, append([]func(*Config){func(c *Config) {
		c.Login = syncer.New(c.Store, c.Box, opts)
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
		var a AccountJSON
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
		var now AccountJSON
		e.request(e.admin, "GET", acct, nil).want(t, 200).json(t, &now)
		if now.IMAPPort != mem.Port() {
			t.Fatalf("a refused change was saved: %+v", now)
		}
		e.request(e.admin, "PATCH", acct, map[string]any{"login": "bob", "name": "renamed"}).want(t, 200)
	})
}
