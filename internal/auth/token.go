package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// TokenPrefix starts every API token, so a leaked one is recognisable in logs and by secret
// scanners.
const TokenPrefix = "mst_"

// NewToken returns a new random API token (shown once to its owner) and the hash to store.
func NewToken() (token, hash string) {
	token = TokenPrefix + rand.Text() + rand.Text()
	return token, HashToken(token)
}

// HashToken is the stored form of a token. A token has 256 bits of entropy, so a fast hash is
// enough: nobody can search its space, and checking one costs one SHA-256 per request.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LooksLikeToken reports whether s has the shape of a token (a cheap check before a lookup).
func LooksLikeToken(s string) bool {
	return strings.HasPrefix(s, TokenPrefix) && len(s) > len(TokenPrefix)+16 && len(s) < 200
}

// DeriveKey derives a key for one purpose (for example "session") from the server key, so one
// secret serves several uses without one use's key revealing another's.
func DeriveKey(serverKey []byte, purpose string) []byte {
	m := hmac.New(sha256.New, serverKey)
	m.Write([]byte("mailsync key for " + purpose))
	return m.Sum(nil)
}
