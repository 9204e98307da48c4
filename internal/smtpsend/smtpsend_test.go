package smtpsend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"mailsync/internal/compose"
	"mailsync/internal/smtpsend"
	"mailsync/internal/smtptest"
)

const (
	login    = "ann@example.com"
	password = "s3cret-pass"
	token    = "ya29.test-token"
)

var msg = []byte("From: ann@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n")

// config is a client configuration for srv's STARTTLS port with the password login.
func config(srv *smtptest.Server) smtpsend.Config {
	return smtpsend.Config{
		Host: "127.0.0.1", Port: srv.Port(), TLS: smtpsend.TLSStartTLS, InsecureSkipVerify: true,
		Login: login, Password: password, DialTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second,
	}
}

func send(t *testing.T, cfg smtpsend.Config, rcpts ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return smtpsend.Send(ctx, cfg, login, rcpts, msg, nil)
}

// smtpError checks err is an *smtpsend.Error at stage, with temporary and code (0: any), that
// does not say the password or token.
func smtpError(t *testing.T, err error, stage string, temporary bool, code int) smtpsend.Error {
	t.Helper()
	var e *smtpsend.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want an *smtpsend.Error", err, err)
	}
	if e.Stage != stage || e.Temporary != temporary || (code != 0 && e.Code != code) {
		t.Errorf("err = %+v, want stage %s, temporary %v, code %d", e, stage, temporary, code)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), token) {
		t.Errorf("error text has a secret: %q", err)
	}
	if got, want := smtpsend.Uncertain(err), stage == smtpsend.StageAfterData; got != want {
		t.Errorf("Uncertain = %v, want %v", got, want)
	}
	return *e // a value, not an error: callers read its fields or leave it
}

func TestSendStartTLSPlain(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	answer, err := send(t, config(srv), "bob@example.org", "carl@example.net")
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !strings.HasPrefix(answer, "250 ") {
		t.Errorf("answer = %q, want the 250 reply", answer)
	}
	got := srv.Messages()
	if len(got) != 1 {
		t.Fatalf("server got %d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != login || !slices.Equal(m.Rcpts, []string{"bob@example.org", "carl@example.net"}) || m.Authed != login {
		t.Errorf("received %+v", m)
	}
	if !bytes.Equal(m.Data, msg) {
		t.Errorf("data = %q, want %q (dot-stuffing undone)", m.Data, msg)
	}
}

func TestSendImplicitTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	cfg := config(srv)
	cfg.TLS, cfg.Port = smtpsend.TLSImplicit, srv.TLSPort()
	if _, err := send(t, cfg, "bob@example.org"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n := srv.Transactions(); n != 1 {
		t.Errorf("Transactions = %d, want 1", n)
	}
}

func TestSendNoTLSAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password), smtptest.WithInsecureAuth())
	cfg := config(srv)
	cfg.TLS = smtpsend.TLSNone
	if _, err := send(t, cfg, "bob@example.org"); err != nil {
		t.Fatalf("Send with TLS none chosen explicitly: %v", err)
	}
	if m := srv.Messages(); len(m) != 1 || m[0].Authed != login {
		t.Errorf("received %+v", m)
	}
}

func TestSendUntrustedCertificate(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	for _, mode := range []smtpsend.TLSMode{smtpsend.TLSStartTLS, smtpsend.TLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := config(srv)
			cfg.InsecureSkipVerify, cfg.TLS = false, mode
			if mode == smtpsend.TLSImplicit {
				cfg.Port = srv.TLSPort()
			}
			_, err := send(t, cfg, "bob@example.org")
			smtpError(t, err, smtpsend.StageTLS, false, 0)
		})
	}
	if srv.Transactions() != 0 {
		t.Errorf("a message went through an unverified connection")
	}
}

func TestSendWrongPassword(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password+"-other"))
	_, err := send(t, config(srv), "bob@example.org")
	e := smtpError(t, err, smtpsend.StageAuth, false, 535)
	if e.Text == "" {
		t.Errorf("no server text in %+v", e)
	}
	if srv.AuthFailures() != 1 {
		t.Errorf("AuthFailures = %d, want 1", srv.AuthFailures())
	}
}

func TestCheck(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := smtpsend.Check(ctx, config(srv)); err != nil {
		t.Errorf("Check: %v", err)
	}
	bad := config(srv)
	bad.Password = "wrong"
	smtpError(t, smtpsend.Check(ctx, bad), smtpsend.StageAuth, false, 535)
	if srv.DataCommands() != 0 {
		t.Errorf("Check sent DATA")
	}
}

func TestSendRcptRefused(t *testing.T) {
	tests := []struct {
		code      int
		temporary bool
	}{{450, true}, {550, false}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithUser(login, password),
				smtptest.WithRcptReply("carl@example.net", tt.code, "mailbox unavailable"))
			_, err := send(t, config(srv), "bob@example.org", "carl@example.net")
			e := smtpError(t, err, smtpsend.StageRcpt, tt.temporary, tt.code)
			if e.Recipient != "carl@example.net" || e.Text != "mailbox unavailable" {
				t.Errorf("err = %+v, want the recipient and the server's text", e)
			}
			if srv.DataCommands() != 0 {
				t.Errorf("DATA sent after a refused recipient")
			}
		})
	}
}

func TestSendDataRefused(t *testing.T) {
	tests := []struct {
		code      int
		temporary bool
	}{{451, true}, {554, false}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithUser(login, password), smtptest.WithDataReply(tt.code, "message looks like spam"))
			_, err := send(t, config(srv), "bob@example.org")
			e := smtpError(t, err, smtpsend.StageData, tt.temporary, tt.code)
			if e.Text != "message looks like spam" {
				t.Errorf("Text = %q, want the server's", e.Text)
			}
			if srv.Transactions() != 1 {
				t.Errorf("Transactions = %d, want 1 (the body was read, then refused)", srv.Transactions())
			}
		})
	}
}

func TestSendDroppedAfterData(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password), smtptest.WithDropAfterData())
	_, err := send(t, config(srv), "bob@example.org")
	smtpError(t, err, smtpsend.StageAfterData, false, 0)
	if !smtpsend.Uncertain(err) {
		t.Errorf("Uncertain(%v) = false", err)
	}
	if srv.Transactions() != 1 {
		t.Errorf("Transactions = %d: the server did read the body, that is why it is uncertain", srv.Transactions())
	}
}

func TestSendCancelledAwaitingReply(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password), smtptest.WithReplyDelay(3*time.Second))
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := smtpsend.Send(ctx, config(srv), login, []string{"bob@example.org"}, msg, nil)
		smtpError(t, err, smtpsend.StageAfterData, false, 0)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to say the context ended", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send took %v after its context ended", d)
		}
	})
	t.Run("command timeout", func(t *testing.T) {
		cfg := config(srv)
		cfg.CommandTimeout = 500 * time.Millisecond
		_, err := send(t, cfg, "bob@example.org")
		smtpError(t, err, smtpsend.StageAfterData, false, 0)
	})
}

func TestSendBeforeDataError(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	stop := errors.New("could not record the submission")
	called := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := smtpsend.Send(ctx, config(srv), login, []string{"bob@example.org"}, msg, func() error { called++; return stop })
	if !errors.Is(err, stop) || smtpsend.Uncertain(err) {
		t.Errorf("err = %v, want the beforeData error, not uncertain", err)
	}
	if called != 1 || srv.DataCommands() != 0 || srv.Transactions() != 0 {
		t.Errorf("beforeData called %d times; server saw %d DATA, %d bodies; want 1, 0, 0", called, srv.DataCommands(), srv.Transactions())
	}

	// And when it returns nil, it is called after the last RCPT and before DATA.
	_, err = smtpsend.Send(ctx, config(srv), login, []string{"bob@example.org"}, msg, func() error {
		if srv.DataCommands() != 0 {
			t.Error("beforeData called after DATA")
		}
		return nil
	})
	if err != nil || srv.Transactions() != 1 {
		t.Errorf("Send = %v, Transactions %d", err, srv.Transactions())
	}
}

func TestSendOAuth(t *testing.T) {
	tests := []struct {
		name  string
		mechs []string
	}{
		{"XOAUTH2", []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}},
		{"OAUTHBEARER only", []string{"OAUTHBEARER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithOAuthToken(login, token), smtptest.WithMechanisms(tt.mechs...))
			cfg := config(srv)
			cfg.Password = ""
			cfg.Token = func(context.Context) (string, error) { return token, nil }
			if _, err := send(t, cfg, "bob@example.org"); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if m := srv.Messages(); len(m) != 1 || m[0].Authed != login {
				t.Errorf("received %+v", m)
			}

			cfg.Token = func(context.Context) (string, error) { return "stale-token", nil }
			_, err := send(t, cfg, "bob@example.org")
			smtpError(t, err, smtpsend.StageAuth, false, 535)
			if strings.Contains(err.Error(), "stale-token") {
				t.Errorf("error has the token: %v", err)
			}
		})
	}
	t.Run("token too long for the AUTH line", func(t *testing.T) {
		long := strings.Repeat("t", 1500) // Microsoft's tokens run to kilobytes
		for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
			srv := smtptest.Start(t, smtptest.WithOAuthToken(login, long), smtptest.WithMechanisms(mech))
			cfg := config(srv)
			cfg.Password = ""
			cfg.Token = func(context.Context) (string, error) { return long, nil }
			if _, err := send(t, cfg, "bob@example.org"); err != nil {
				t.Errorf("%s: Send: %v", mech, err)
			}
		}
	})
	t.Run("token source error", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.WithOAuthToken(login, token))
		cfg := config(srv)
		revoked := errors.New("sign in again")
		cfg.Token = func(context.Context) (string, error) { return "", revoked }
		_, err := send(t, cfg, "bob@example.org")
		if !errors.Is(err, revoked) {
			t.Errorf("err = %v, want the token source's error kept", err)
		}
		smtpError(t, err, smtpsend.StageAuth, true, 0)
	})
}

func TestSendConnectFailure(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))

	t.Run("refused by the dialer", func(t *testing.T) {
		cfg := config(srv)
		policy := errors.New("destination refused by policy")
		cfg.Dial = func(context.Context, string, string) (net.Conn, error) { return nil, policy }
		_, err := send(t, cfg, "bob@example.org")
		smtpError(t, err, smtpsend.StageConnect, false, 0)
		if !errors.Is(err, policy) {
			t.Errorf("err = %v, want the dialer's error", err)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := config(srv)
		cfg.Port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		_, err = send(t, cfg, "bob@example.org")
		smtpError(t, err, smtpsend.StageConnect, true, 0)
	})
	t.Run("no greeting", func(t *testing.T) {
		cfg := config(srv)
		cfg.Port = srv.TLSPort() // waits for a TLS hello: the plain greeting never comes
		cfg.CommandTimeout = 300 * time.Millisecond
		_, err := send(t, cfg, "bob@example.org")
		smtpError(t, err, smtpsend.StageConnect, true, 0)
	})
}

func TestSendRefusesPlainTextAuth(t *testing.T) {
	// The server would take AUTH without TLS; a client set to STARTTLS must not offer it.
	srv := smtptest.Start(t, smtptest.WithUser(login, password), smtptest.WithoutSTARTTLS(), smtptest.WithInsecureAuth())
	_, err := send(t, config(srv), "bob@example.org")
	smtpError(t, err, smtpsend.StageTLS, false, 0)
	if n := srv.AuthAttempts(); n != 0 {
		t.Errorf("the client tried AUTH %d times without TLS", n)
	}
}

func TestSendLocalName(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	cfg := config(srv)
	cfg.LocalName = "client.example.com"
	if _, err := send(t, cfg, "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages(); len(m) != 1 || m[0].Helo != "client.example.com" {
		t.Errorf("received %+v, want EHLO client.example.com", m)
	}
}

// TestSendComposed is the path a send takes: a draft composed, its envelope submitted; the Bcc
// recipient gets the message without appearing in it.
func TestSendComposed(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithUser(login, password))
	m, err := compose.Compose(compose.Draft{
		From: "Ann <" + login + ">", To: []string{"Bob <bob@example.org>"}, Bcc: []string{"hidden@example.net"},
		Subject: "Grüße", Text: "line\n.\nafter a lone dot\n",
	}, compose.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := smtpsend.Send(ctx, config(srv), m.From, m.Recipients, m.Raw, nil); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.Messages()
	if len(got) != 1 || !slices.Equal(got[0].Rcpts, []string{"bob@example.org", "hidden@example.net"}) {
		t.Fatalf("received %+v", got)
	}
	if !bytes.Equal(got[0].Data, m.Raw) {
		t.Errorf("the server got other bytes than composed:\n%s\nwant\n%s", got[0].Data, m.Raw)
	}
	if bytes.Contains(got[0].Data, []byte("hidden@")) {
		t.Errorf("the Bcc recipient is in the message")
	}
}
