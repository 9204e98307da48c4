package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"mailsync/internal/store"
)

// Sessions issues and checks the web UI's session cookies. A cookie is a signed value: a random
// session id, the user id, the expiry, and an HMAC over them and the user's password hash. The
// signature lets a forged or damaged cookie be refused without a lookup; the id names a row in the
// database (store.CreateSession), and a cookie is honoured only while that row exists, so logout
// and revocation end a session at once. Changing a password ends every session of that user
// twice over: its rows are deleted, and the old signatures no longer match.
type Sessions struct {
	key []byte
	ttl time.Duration
	// Now replaces the wall clock when set (tests).
	Now func() time.Time
}

// NewSessions returns Sessions signing with key (see DeriveKey) and lasting ttl.
func NewSessions(key []byte, ttl time.Duration) *Sessions {
	return &Sessions{key: key, ttl: ttl}
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ErrBadSession is returned for a session value that is malformed, expired or not signed by us.
var ErrBadSession = errors.New("auth: invalid or expired session")

// Session is what a session value says. It is not trusted until Check has verified the value.
type Session struct {
	ID      string // hex of 16 random bytes: the key of the session's row
	UserID  int64
	Expires time.Time
}

const (
	sessionIDLen = 16
	sessionLen   = sessionIDLen + 8 + 8 + sha256.Size
)

// Issue returns a new session value for u and what it says. The caller stores the session
// (store.CreateSession) before handing the value out.
func (s *Sessions) Issue(u store.User) (string, Session) {
	expires := s.now().Add(s.ttl).Truncate(time.Second).UTC()
	buf := make([]byte, sessionIDLen+16, sessionLen)
	rand.Read(buf[:sessionIDLen])
	binary.BigEndian.PutUint64(buf[sessionIDLen:], uint64(u.ID))
	binary.BigEndian.PutUint64(buf[sessionIDLen+8:], uint64(expires.Unix()))
	buf = append(buf, s.mac(buf[:sessionIDLen+16], u.PasswordHash)...)
	return base64.RawURLEncoding.EncodeToString(buf), Session{ID: hex.EncodeToString(buf[:sessionIDLen]), UserID: u.ID, Expires: expires}
}

// Parse reads an unexpired session value. Its signature is checked by Check, against the user.
func (s *Sessions) Parse(value string) (Session, error) {
	buf, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(buf) != sessionLen {
		return Session{}, ErrBadSession
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(buf[sessionIDLen+8:])), 0).UTC()
	if !s.now().Before(expires) {
		return Session{}, ErrBadSession
	}
	return Session{ID: hex.EncodeToString(buf[:sessionIDLen]), UserID: int64(binary.BigEndian.Uint64(buf[sessionIDLen:])), Expires: expires}, nil
}

// Check reports whether value is an unexpired session of u signed by this server.
func (s *Sessions) Check(value string, u store.User) bool {
	sess, err := s.Parse(value)
	if err != nil || sess.UserID != u.ID {
		return false
	}
	buf, _ := base64.RawURLEncoding.DecodeString(value)
	return hmac.Equal(buf[sessionIDLen+16:], s.mac(buf[:sessionIDLen+16], u.PasswordHash))
}

func (s *Sessions) mac(payload []byte, passwordHash string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	m.Write([]byte(passwordHash))
	return m.Sum(nil)
}
