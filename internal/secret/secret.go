// Package secret seals IMAP passwords for storage: AES-256-GCM under the server key, a random
// nonce per seal, the account's identity bound in as associated data so a sealed password moved to
// another row does not open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KeySize is the length of a server key in bytes.
const KeySize = 32

// version prefixes every sealed value so the format can change without guessing.
const version byte = 1

// Box seals and opens secrets under one key.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext; context (for example "account:bob@host") must be given again to Open.
func (b *Box) Seal(plaintext, context []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	rand.Read(nonce)
	out := append([]byte{version}, nonce...)
	return b.aead.Seal(out, nonce, plaintext, context)
}

// ErrOpen is returned when a sealed value does not open: another key, another context, or damage.
var ErrOpen = errors.New("secret: cannot open sealed value (wrong server key?)")

// Open decrypts what Seal produced.
func (b *Box) Open(sealed, context []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], context)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// ErrNoKeyFile is returned by ReadKey when no key is set and the key file does not exist.
var ErrNoKeyFile = errors.New("secret: no key file")

// ReadKey is LoadKey without the creation: a missing key file is ErrNoKeyFile, so that a caller
// can refuse to make a new key where an old one is needed (sealed secrets would never open again).
func ReadKey(encoded, path string) ([]byte, error) {
	if encoded == "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoKeyFile, path)
		}
	}
	return LoadKey(encoded, path)
}

// LoadKey returns the server key: from encoded (base64 of 32 bytes, as MAILSYNC_SECRET_KEY
// carries it) when set, else from the key file at path, which is created with a new random key
// (mode 0600) when it does not exist yet.
func LoadKey(encoded, path string) ([]byte, error) {
	if encoded != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
		if err != nil || len(key) != KeySize {
			return nil, fmt.Errorf("secret: MAILSYNC_SECRET_KEY must be %d bytes in base64 (make one with: head -c 32 /dev/urandom | base64)", KeySize)
		}
		return key, nil
	}
	data, err := os.ReadFile(path)
	if err == nil {
		key, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if derr != nil || len(key) != KeySize {
			return nil, fmt.Errorf("secret: key file %s is not %d bytes in base64", path, KeySize)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret: %w", err)
	}
	key := make([]byte, KeySize)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a different key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadKey("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("secret: create key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("secret: write key file: %w", err)
	}
	return key, nil
}

// AccountContext is the associated data an account's IMAP password is sealed with: its login and
// host, so a sealed password copied onto another account's row does not open there. Everything
// that seals or opens an account password uses it, so the two sides cannot drift apart.
func AccountContext(login, host string) []byte {
	return []byte("account:" + login + "@" + host)
}

// WebhookContext is the associated data a webhook's signing secret is sealed with: the
// endpoint's id, so a sealed secret copied onto another endpoint's row does not open there.
func WebhookContext(id int64) []byte {
	return []byte("webhook:" + strconv.FormatInt(id, 10))
}
