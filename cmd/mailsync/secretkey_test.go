package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

// TestMissingKeyWithSealedSecretsRefusesToStart: a lost secret.key is not replaced by a new one
// while the database holds passwords sealed under the old one; a fresh install still gets its key.
func TestMissingKeyWithSealedSecretsRefusesToStart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		s := storetest.OpenDSN(t, dsn, true)
		dataDir := t.TempDir()
		keyFile := filepath.Join(dataDir, "secret.key")

		// Nothing sealed yet: the key is made on first use.
		g := &Globals{DataDir: dataDir}
		if _, err := g.serverKey(context.Background(), s); err != nil {
			t.Fatalf("a fresh install gets no key: %v", err)
		}
		u, err := s.CreateUser(context.Background(), "ann@example.test", "x", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateAccount(context.Background(), store.Account{UserID: u.ID, Name: "work", IMAPHost: "127.0.0.1",
			IMAPPort: 1, TLSMode: "none", Login: "ann", SecretEnc: []byte("sealed under a key now lost")}); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"serve", "--addr", "127.0.0.1:0"},
			{"sync", "work"},
			{"account", "edit", "work", "--name", "renamed"},
		} {
			emptyDir := t.TempDir()
			code, _, errOut := mailsync(t, append([]string{"--db", dsn, "--data-dir", emptyDir}, args...)...)
			if code == 0 || !strings.Contains(errOut, "is missing, and the database holds 1 IMAP passwords sealed under it") ||
				!strings.Contains(errOut, "restore the file from a backup") || !strings.Contains(errOut, "account edit ID --password-stdin") {
				t.Fatalf("%v with the key missing: %d %q", args, code, errOut)
			}
			if _, err := os.Stat(filepath.Join(emptyDir, "secret.key")); !os.IsNotExist(err) {
				t.Fatalf("%v made a new key file: %v", args, err)
			}
		}
		if _, err := os.Stat(keyFile); err != nil {
			t.Fatalf("the first run made no key file: %v", err)
		}
	})
}
