package imaptest

import (
	"errors"
	"strings"
	"testing"

	"mailsync/internal/cyrus"
	"mailsync/internal/testenv"
)

// Cyrus is a private Cyrus IMAP 3.6 on 127.0.0.1 (see package cyrus) that fails the test instead
// of returning errors: plain IMAP, LOGIN against its own sasldb, every file under the test's
// temporary directory.
type Cyrus struct {
	srv *cyrus.Server
}

// StartCyrus starts a private Cyrus and stops it when the test ends. When Cyrus is not
// provisioned (scripts/provision.sh, which scripts/test.sh runs), the test is skipped with one
// line, or fails under MAILSYNC_TEST_STRICT (see package testenv).
func StartCyrus(tb testing.TB) *Cyrus {
	tb.Helper()
	srv, err := cyrus.Start(tb.TempDir())
	if errors.Is(err, cyrus.ErrNotProvisioned) {
		testenv.Skip(tb, "cyrus", strings.TrimPrefix(err.Error(), "cyrus: "))
	}
	if err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return &Cyrus{srv: srv}
}

// Addr returns host:port of the IMAP listener.
func (c *Cyrus) Addr() string { return c.srv.Addr() }

// Host returns the listener's host, 127.0.0.1.
func (c *Cyrus) Host() string { return c.srv.Host() }

// Port returns the listener's port.
func (c *Cyrus) Port() int { return c.srv.Port() }

// AddUser creates an account; its INBOX appears at its first login.
func (c *Cyrus) AddUser(tb testing.TB, login, password string) User {
	tb.Helper()
	if err := c.srv.AddUser(login, password); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	return User{Login: login, Password: password}
}

// Client logs in as u with go-imap, to shape the mailbox a test syncs.
func (c *Cyrus) Client(tb testing.TB, u User) *Client {
	tb.Helper()
	return DialClient(tb, c.Addr(), u)
}
