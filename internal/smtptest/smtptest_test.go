package smtptest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailsync/internal/smtptest"
)

func dial(t *testing.T, srv *smtptest.Server) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(srv.Addr(), srv.TLSConfig())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestServerRequiresAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser("ann", "pw"))
	c := dial(t, srv)
	var se *smtp.SMTPError
	if err := c.Mail("ann@example.com", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Errorf("MAIL before AUTH = %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "ann", "pw")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.SendMail("ann@example.com", []string{"bob@example.org"}, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	got := srv.Messages()
	if len(got) != 1 || got[0].Authed != "ann" || got[0].Reply != 250 || string(got[0].Data) != "Subject: x\r\n\r\nbody\r\n" {
		t.Errorf("Messages = %+v", got)
	}
	got[0].Rcpts[0] = "changed"
	if srv.Messages()[0].Rcpts[0] != "bob@example.org" {
		t.Error("Messages hands out the server's own slices")
	}
	if srv.AuthAttempts() != 1 || srv.AuthFailures() != 0 || srv.DataCommands() != 1 || srv.Transactions() != 1 {
		t.Errorf("attempts %d failures %d data %d transactions %d, want 1 0 1 1",
			srv.AuthAttempts(), srv.AuthFailures(), srv.DataCommands(), srv.Transactions())
	}
}

func TestServerFailureKnobs(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithRcptReply("Full@Example.org", 452, "mailbox full"), smtptest.WithDataReply(554, "no thanks"))
	c := dial(t, srv)
	if err := c.Mail("ann@example.com", nil); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := c.Rcpt("full@example.org", nil); !errors.As(err, &se) || se.Code != 452 || se.Message != "mailbox full" {
		t.Errorf("RCPT = %v, want 452 mailbox full", err)
	}
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("x\r\n"))
	if err := w.Close(); !errors.As(err, &se) || se.Code != 554 {
		t.Errorf("final reply = %v, want 554", err)
	}
	if m := srv.Messages(); len(m) != 1 || m[0].Reply != 554 || len(m[0].Rcpts) != 1 {
		t.Errorf("Messages = %+v, want the refused one recorded with its reply", m)
	}
}
