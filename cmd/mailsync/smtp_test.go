package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"mailsync/internal/imaptest"
	"mailsync/internal/smtpsend"
	"mailsync/internal/smtptest"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		want    store.SMTP
		wantErr string
	}{
		{url: "smtp://smtp.example.org", want: store.SMTP{Host: "smtp.example.org", Port: 587, TLSMode: "starttls"}},
		{url: "smtps://smtp.example.org", want: store.SMTP{Host: "smtp.example.org", Port: 465, TLSMode: "tls"}},
		{url: "smtp+plain://127.0.0.1:2525", want: store.SMTP{Host: "127.0.0.1", Port: 2525, TLSMode: "none"}},
		{url: "smtp://[::1]:10587", want: store.SMTP{Host: "::1", Port: 10587, TLSMode: "starttls"}},
		{url: "http://smtp.example.org", wantErr: "scheme"},
		{url: "smtp://bob@smtp.example.org", wantErr: "no login"},
		{url: "smtp://smtp.example.org:0", wantErr: "bad port"},
		{url: "smtp://", wantErr: "HOST"},
	} {
		got, err := parseSMTPURL(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.url, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.url, got, err, tc.want)
		}
	}
	if host, port, tls, saves := smtpsend.Guess("imap.example.org"); host != "smtp.example.org" || port != 587 || tls != smtpsend.TLSStartTLS || saves {
		t.Errorf("Guess(imap.example.org) = %s %d %s %v", host, port, tls, saves)
	}
	if _, _, _, saves := smtpsend.Guess("imap.gmail.com"); !saves {
		t.Error("Gmail's server saves sent mail itself")
	}
}

// TestAccountSMTPURL: --smtp-url is tested with the account's login before anything is saved, and
// account edit changes or removes it.
func TestAccountSMTPURL(t *testing.T) {
	ctx := context.Background()
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "alice", "correct horse")
	good := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password))
	stranger := smtptest.Start(t) // knows no such user
	dsn := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, dsn, true)
	if _, err := s.CreateUser(ctx, "alice@example.test", "x", false); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	add := func(smtpURL string) (int, string, string) {
		return mailsyncIn(t, u.Password+"\n", "--db", dsn, "--data-dir", data, "account", "add", "--user", "alice@example.test",
			"--name", "work", "--imap-url", "imap://"+u.Login+"@"+dovecot.Addr(), "--tls", "none", "--tls-skip-verify",
			"--password-stdin", "--smtp-url", smtpURL)
	}
	code, _, stderr := add(fmt.Sprintf("smtp://127.0.0.1:%d", stranger.Port()))
	if code == 0 || !strings.Contains(stderr, "nothing saved") {
		t.Fatalf("an SMTP server that refuses the login: code %d, stderr %q", code, stderr)
	}
	if accounts, _ := s.Accounts(ctx, 0); len(accounts) != 0 {
		t.Fatalf("a refused SMTP login saved %d accounts", len(accounts))
	}
	code, out, stderr := add(fmt.Sprintf("smtp://127.0.0.1:%d", good.Port()))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("sends mail through 127.0.0.1:%d (starttls)", good.Port())) {
		t.Fatalf("account add --smtp-url: code %d, out %q, err %q", code, out, stderr)
	}
	accounts, err := s.Accounts(ctx, 0)
	if err != nil || len(accounts) != 1 {
		t.Fatalf("accounts %v %v", accounts, err)
	}
	id := accounts[0].ID
	if c, err := s.AccountSMTP(ctx, id); err != nil || c.Port != good.Port() || c.TLSMode != "starttls" || c.SavesSent {
		t.Fatalf("stored SMTP = %+v, %v", c, err)
	}

	code, _, stderr = mailsyncIn(t, "", "--db", dsn, "--data-dir", data, "account", "edit", "work", "--smtp-url", fmt.Sprintf("smtps://127.0.0.1:%d", stranger.TLSPort()))
	if code == 0 || !strings.Contains(stderr, "SMTP not changed") {
		t.Fatalf("edit to a refusing server: code %d, stderr %q", code, stderr)
	}
	code, _, stderr = mailsyncIn(t, "", "--db", dsn, "--data-dir", data, "account", "edit", "work", "--smtp-url", fmt.Sprintf("smtps://127.0.0.1:%d", good.TLSPort()), "--smtp-saves-sent")
	if code != 0 {
		t.Fatalf("edit --smtp-url smtps://: code %d, stderr %q", code, stderr)
	}
	if c, err := s.AccountSMTP(ctx, id); err != nil || c.Port != good.TLSPort() || c.TLSMode != "tls" || !c.SavesSent {
		t.Fatalf("stored SMTP after the edit = %+v, %v", c, err)
	}
	if code, _, stderr = mailsyncIn(t, "", "--db", dsn, "--data-dir", data, "account", "edit", "work", "--smtp-url", "none"); code != 0 {
		t.Fatalf("edit --smtp-url none: %d %q", code, stderr)
	}
	if _, err := s.AccountSMTP(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after --smtp-url none: %v, want no SMTP server", err)
	}
}
