package secret

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func mustBox(t *testing.T, key []byte) *Box {
	t.Helper()
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b := mustBox(t, key)
	sealed := b.Seal([]byte("hunter2"), []byte("account:1"))
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if again := b.Seal([]byte("hunter2"), []byte("account:1")); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one secret are equal: the nonce is not random")
	}
	plain, err := b.Open(sealed, []byte("account:1"))
	if err != nil || string(plain) != "hunter2" {
		t.Fatalf("Open = %q, %v", plain, err)
	}
	other := mustBox(t, bytes.Repeat([]byte{8}, KeySize))
	cases := map[string]func() ([]byte, error){
		"other context": func() ([]byte, error) { return b.Open(sealed, []byte("account:2")) },
		"other key":     func() ([]byte, error) { return other.Open(sealed, []byte("account:1")) },
		"truncated":     func() ([]byte, error) { return b.Open(sealed[:5], []byte("account:1")) },
		"flipped bit": func() ([]byte, error) {
			bad := bytes.Clone(sealed)
			bad[len(bad)-1] ^= 1
			return b.Open(bad, []byte("account:1"))
		},
	}
	for name, open := range cases {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: err = %v, want ErrOpen", name, err)
		}
	}
}

func TestLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret.key")
	key, err := LoadKey("", path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	again, err := LoadKey("", path)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(again, key))
	}
	env := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, KeySize))
	if k, err := LoadKey(env, path); err != nil || k[0] != 1 {
		t.Fatalf("env key: %v", err)
	}
	if _, err := LoadKey("c2hvcnQ=", path); err == nil {
		t.Fatal("a short env key was accepted")
	}
}

func TestAccountContextBindsLoginAndHost(t *testing.T) {
	key := make([]byte, KeySize)
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := b.Seal([]byte("pw"), AccountContext("bob", "imap.example"))
	if got, err := b.Open(sealed, AccountContext("bob", "imap.example")); err != nil || string(got) != "pw" {
		t.Fatalf("Open with the same account: %q, %v", got, err)
	}
	for _, other := range [][2]string{{"alice", "imap.example"}, {"bob", "imap.other"}} {
		if _, err := b.Open(sealed, AccountContext(other[0], other[1])); err == nil {
			t.Errorf("a password sealed for bob@imap.example opened for %s@%s", other[0], other[1])
		}
	}
	if got := string(AccountContext("bob", "h")); got != "account:bob@h" {
		t.Fatalf("AccountContext = %q, want account:bob@h", got)
	}
}

func TestReadKeyNeverCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	if _, err := ReadKey("", path); !errors.Is(err, ErrNoKeyFile) {
		t.Fatalf("ReadKey of a missing file: %v, want ErrNoKeyFile", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("ReadKey created the file: %v", err)
	}
	made, err := LoadKey("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ReadKey("", path); err != nil || string(got) != string(made) {
		t.Fatalf("ReadKey of the made key: %v", err)
	}
}
