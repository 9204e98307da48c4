package imapconn

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestClassify(t *testing.T) {
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ""},
		{"authentication failed code", no(imap.ResponseCodeAuthenticationFailed, "Authentication failed."), ClassAuth},
		{"limit code", no(imap.ResponseCodeLimit, "Maximum number of connections"), ClassThrottled},
		{"unavailable code", no(imap.ResponseCodeUnavailable, "Temporary failure"), ClassThrottled},
		{"gmail wording", no("", "Too many simultaneous connections. (Failure)"), ClassThrottled},
		{"in use", no(imap.ResponseCodeInUse, "Mailbox locked"), ClassTransient},
		{"NO on select", no(imap.ResponseCodeNonExistent, "Mailbox doesn't exist"), ClassPermanent},
		{"BAD", &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Error in IMAP command"}, ClassPermanent},
		{"BYE", &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}, ClassTransient},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ClassTransient},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), ClassTransient},
		{"EOF", io.ErrUnexpectedEOF, ClassTransient},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), ClassTransient},
		{"deadline", context.DeadlineExceeded, ClassTransient},
		{"no such host", &net.DNSError{Err: "no such host", Name: "imap.invalid", IsNotFound: true}, ClassPermanent},
		{"unknown CA", x509.UnknownAuthorityError{}, ClassPermanent},
		{"unknown error", errors.New("something odd"), ClassPermanent},
		{"wrapped *Error keeps its class", fmt.Errorf("sync: %w", &Error{Op: "x", Class: ClassThrottled, Err: io.EOF}), ClassThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorIsSentinels(t *testing.T) {
	sentinels := map[Class]error{
		ClassAuth: ErrAuth, ClassThrottled: ErrThrottled, ClassTransient: ErrTransient, ClassPermanent: ErrPermanent,
	}
	for class, want := range sentinels {
		err := fmt.Errorf("wrapped: %w", &Error{Op: "op", Class: class, Err: io.EOF})
		for other, sentinel := range sentinels {
			if got := errors.Is(err, sentinel); got != (other == class) {
				t.Errorf("class %s: errors.Is(%v) = %v", class, sentinel, got)
			}
		}
		if !errors.Is(err, io.EOF) {
			t.Errorf("class %s: the cause is not reachable with errors.Is", class)
		}
		if errors.Is(err, want) && Classify(err) != class {
			t.Errorf("Classify = %s, want %s", Classify(err), class)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{
			&Error{Op: "login to mail.example.org:993 as bob", Class: ClassAuth,
				Err: &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed."}},
			"imap: login to mail.example.org:993 as bob: authentication failed (server said NO [AUTHENTICATIONFAILED] Authentication failed.)",
		},
		{
			&Error{Op: `select "Archive"`, Class: ClassPermanent,
				Err: &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox doesn't exist: Archive"}},
			`imap: select "Archive": server said NO Mailbox doesn't exist: Archive`,
		},
		{
			&Error{Op: `fetch bodies 1:* of "INBOX"`, Class: ClassTransient, Err: io.ErrUnexpectedEOF},
			`imap: fetch bodies 1:* of "INBOX": connection closed by the server`,
		},
		{
			&Error{Op: "list folders", Class: ClassTransient, Err: context.Canceled},
			"imap: list folders: cancelled",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q\nwant      %q", got, tt.want)
		}
	}
}

// TestSealRedactsEveryAnswer: after login, a server may still echo the password in any answer
// (a folder name, a NO text, an unparseable line). What leaves a Conn never holds it.
func TestSealRedactsEveryAnswer(t *testing.T) {
	const pw = `s3cret"pass\word`
	c := &Conn{cfg: Config{Login: "bob", Password: pw}}
	for _, cause := range []error{
		&imap.Error{Type: imap.StatusResponseTypeNo, Text: `Mailbox "s3cret\"pass\\word" does not exist`},
		fmt.Errorf("in response: unsupported response type %q", pw),
		fmt.Errorf("connection already closed: %w", fmt.Errorf("received tagged response with unknown tag %+q", pw)),
	} {
		err := c.seal(&Error{Op: `select "x"`, Class: ClassPermanent, Err: cause})
		for e := err; e != nil; e = errors.Unwrap(e) {
			if text := e.Error(); strings.Contains(text, "s3cret") {
				t.Errorf("%T in the chain holds the password: %q", e, text)
			}
		}
		if !strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("%q does not show where the password was", err)
		}
	}
	// A cause without the secret is kept as it is, for errors.Is.
	err := c.seal(&Error{Op: "fetch", Class: ClassTransient, Err: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cause without the password was replaced: %v", err)
	}
}
