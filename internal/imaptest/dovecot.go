// Package imaptest runs real IMAP servers for tests: a private Dovecot process (Debian's
// dovecot-imapd, through package dovecot) and the in-memory server of package memimap.
//
// It imports go-imap, as test support: production code talks IMAP only through internal/imapconn
// (and the demo serves its mailbox with memimap). Every server listens on a free loopback port and keeps its state in its own
// directory, so several test binaries can run servers at the same time.
package imaptest

import (
	"errors"
	"sync/atomic"
	"testing"

	"mailsync/internal/dovecot"
	"mailsync/internal/memimap"
	"mailsync/internal/testenv"
)

const (
	// DovecotBinary is where Debian's dovecot-core installs the server.
	DovecotBinary = dovecot.Binary
	// MailUser is the unprivileged system user Dovecot's mail processes run as.
	MailUser = dovecot.MailUser
)

// User is an IMAP login on a test server.
type User = memimap.User

// Dovecot is a private Dovecot instance on 127.0.0.1 (see package dovecot) that fails the test
// instead of returning errors: plain IMAP (no TLS), LOGIN allowed, Maildir++ storage, every file
// under the test's temporary directory.
type Dovecot struct {
	srv *dovecot.Server
	seq atomic.Uint64 // makes Maildir file names unique
}

// DovecotOption adjusts a Dovecot before it starts.
type DovecotOption func(*dovecot.Options)

// WithMaxUserConnections sets mail_max_userip_connections (default 100), to test how clients
// cope with a server that turns connections away.
func WithMaxUserConnections(n int) DovecotOption {
	return func(o *dovecot.Options) { o.MaxUserConnections = n }
}

// WithOAuth2 makes the server take XOAUTH2 and OAUTHBEARER logins, validating every token at
// introspectionURL (oauthtest.Provider.IntrospectionURL).
func WithOAuth2(introspectionURL string) DovecotOption {
	return func(o *dovecot.Options) { o.OAuth2IntrospectionURL = introspectionURL }
}

// StartDovecot starts a private Dovecot and stops it when the test ends. When Dovecot cannot run
// here (not installed, its system user missing, not root: scripts/provision.sh provides them) the
// test is skipped with one line, or fails under MAILSYNC_TEST_STRICT (see package testenv).
func StartDovecot(tb testing.TB, opts ...DovecotOption) *Dovecot {
	tb.Helper()
	var o dovecot.Options
	for _, opt := range opts {
		opt(&o)
	}
	srv, err := dovecot.Start(tb.TempDir(), o)
	if u := (*dovecot.UnavailableError)(nil); errors.As(err, &u) {
		testenv.Skip(tb, "dovecot", u.Reason)
	}
	if err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("imaptest: %v", err)
		}
	})
	return &Dovecot{srv: srv}
}

// Addr returns host:port of the IMAP listener.
func (d *Dovecot) Addr() string { return d.srv.Addr() }

// Host returns the listener's host, 127.0.0.1.
func (d *Dovecot) Host() string { return d.srv.Host() }

// Port returns the listener's port.
func (d *Dovecot) Port() int { return d.srv.Port() }

// LogPath returns Dovecot's log file, worth printing when a test fails.
func (d *Dovecot) LogPath() string { return d.srv.LogPath() }

// MaildirPath returns the root of u's Maildir++ (the INBOX; other folders are ".Name"
// subdirectories).
func (d *Dovecot) MaildirPath(u User) string { return d.srv.MaildirPath(u.Login) }

// AddUser creates an account with an empty INBOX. Dovecot re-reads its passwd-file on change, so
// this works while the server runs.
func (d *Dovecot) AddUser(tb testing.TB, login, password string) User {
	tb.Helper()
	if err := d.srv.AddUser(login, password); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	return User{Login: login, Password: password}
}

// Start starts a stopped Dovecot again, on the same port with the same data: for tests where the
// server dies in the middle of something.
func (d *Dovecot) Start(tb testing.TB) {
	tb.Helper()
	if err := d.srv.Restart(); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
}

// Stop kills Dovecot and all its processes at once, like a crash: open connections drop
// mid-command. It is safe to call on a stopped server.
func (d *Dovecot) Stop() { d.srv.Stop() }

// Pause freezes every Dovecot process (SIGSTOP): connections stay open but nothing answers, as
// with a hung server or a dead network path.
func (d *Dovecot) Pause(tb testing.TB) {
	tb.Helper()
	if err := d.srv.Pause(); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
}

// Resume undoes Pause.
func (d *Dovecot) Resume(tb testing.TB) {
	tb.Helper()
	if err := d.srv.Resume(); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
}
