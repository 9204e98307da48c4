package imapconn_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
)

// wantNoSecret fails when text holds the password in any form a server or a library could have
// echoed it in.
func wantNoSecret(t *testing.T, what, text, password string) {
	t.Helper()
	quoted := strconv.Quote(password)
	for _, form := range []string{password, quoted[1 : len(quoted)-1], strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(password)} {
		if strings.Contains(text, form) {
			t.Fatalf("%s holds the password (as %q): %q", what, form, text)
		}
	}
}

// TestLoginEchoNeverCarriesThePassword: a server that quotes the whole LOGIN line in its refusal
// gets the password, and nothing that comes back out of Dial holds it: not the message, not any
// error in the chain. Short passwords leave the message readable.
func TestLoginEchoNeverCarriesThePassword(t *testing.T) {
	echo := imaptest.StartRecorder(t, true)
	for _, password := range []string{
		"hunter2-long-secret",
		`pa"ss\word-long`,
		"pässwörd-lang",     // not ASCII: sent as a literal, which breaks the echoed line
		"with space inside", // quoted
		"ab",
		"in", // a piece of "login"
	} {
		t.Run(password, func(t *testing.T) {
			cfg := imapconn.Config{Host: echo.Host(), Port: echo.Port(), TLS: imapconn.TLSNone, Login: "bob", Password: password,
				DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second}
			c, err := imapconn.Dial(context.Background(), cfg)
			if err == nil {
				c.Close()
				t.Fatal("the recorder accepted the login")
			}
			if !echo.Received(password) && !echo.Received(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(password)) {
				t.Fatalf("the server never got the password, so the test proves nothing: %q", echo.Lines())
			}
			msg := err.Error()
			if len(password) < 6 {
				// Too short to look for inside words: the message must be exactly the operation and
				// the status, untouched by any redaction.
				want := fmt.Sprintf("imap: login to %s:%d as bob: authentication failed (server said NO [AUTHENTICATIONFAILED])", echo.Host(), echo.Port())
				if msg != want {
					t.Fatalf("message %q\nwant    %q", msg, want)
				}
			} else {
				for e := err; e != nil; e = errors.Unwrap(e) {
					wantNoSecret(t, fmt.Sprintf("%T in the chain", e), e.Error(), password)
				}
				wantNoSecret(t, "%+v", fmt.Sprintf("%+v", err), password)
			}
			if !strings.HasPrefix(msg, fmt.Sprintf("imap: login to %s:%d as bob: ", echo.Host(), echo.Port())) ||
				strings.Contains(msg, "refused:") {
				t.Fatalf("message %q: want the operation, and none of the server's text", msg)
			}
			if imapconn.Classify(err) == imapconn.ClassAuth && !strings.Contains(msg, "authentication failed (server said NO [AUTHENTICATIONFAILED])") {
				t.Fatalf("message %q does not say what the server answered", msg)
			}
			var ie *imapconn.Error
			if !errors.As(err, &ie) || ie.Unreached() {
				t.Fatalf("a refused login counts as unreached: %v", err)
			}
		})
	}
}
