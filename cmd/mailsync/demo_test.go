package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"mailsync/internal/secret"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// Two demo starts on one database leave one user and one account, pointing at the second
// server, which holds the whole generated mailbox and accepts the stored password.
func TestDemoIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, "sqlite")
	box, err := secret.New(bytes.Repeat([]byte{5}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	first, err := startDemo(ctx, "127.0.0.1:8080", s, box, log)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	second, err := startDemo(ctx, "127.0.0.1:8080", s, box, log)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if second.messages != demoMessages || second.folders < 3 {
		t.Fatalf("demo server holds %d messages in %d folders, want %d in several", second.messages, second.folders, demoMessages)
	}

	u, err := s.UserByEmail(ctx, demoEmail)
	if err != nil {
		t.Fatal(err)
	}
	if !u.IsAdmin {
		t.Error("the demo user is not an admin: the health page would be half empty")
	}
	accounts, err := s.Accounts(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 1 {
		t.Fatalf("%d demo accounts after two starts, want 1", len(accounts))
	}
	a := accounts[0]
	if a.IMAPPort != second.imap.Port() {
		t.Fatalf("the account points at port %d, the running demo server is on %d", a.IMAPPort, second.imap.Port())
	}
	password, err := box.Open(a.SecretEnc, secret.AccountContext(a.Login, a.IMAPHost))
	if err != nil {
		t.Fatal(err)
	}
	if err := syncer.New(s, box, syncer.Options{}).CheckLogin(ctx, a, string(password)); err != nil {
		t.Fatalf("the stored demo account cannot log in: %v", err)
	}

	var out bytes.Buffer
	second.announce(&out, "http://127.0.0.1:8080")
	for _, want := range []string{"http://127.0.0.1:8080", demoEmail, demoPassword} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the announcement lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDemoListensOnLoopbackOnly(t *testing.T) {
	cases := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"192.168.1.10:8080", false},
		{"not an address", false},
	}
	for _, tc := range cases {
		if got := loopback(tc.addr); got != tc.want {
			t.Errorf("loopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	_, err := startDemo(context.Background(), "0.0.0.0:8080", nil, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("demo on 0.0.0.0: %v, want a refusal naming loopback", err)
	}
}
