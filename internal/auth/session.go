package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"mailsync/internal/store"
)

// Sessions issues and checks the web UI's session cookies. A session is a signed value, not a
// row: user id, expiry and an HMAC over both and the user's password hash. Nothing is stored,
// and changing a password ends every session of that user, since the old signatures no longer
// match.
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

const sessionLen = 8 + 8 + sha256.Size

// Issue returns a session value for u and when it expires.
func (s *Sessions) Issue(u store.User) (value string, expires time.Time) {
	expires = s.now().Add(s.ttl).Truncate(time.Second)
	buf := make([]byte, 16, sessionLen)
	binary.BigEndian.PutUint64(buf[0:8], uint64(u.ID))
	binary.BigEndian.PutUint64(buf[8:16], uint64(expires.Unix()))
	buf = append(buf, s.mac(buf[:16], u.PasswordHash)...)
	return base64.RawURLEncoding.EncodeToString(buf), expires
}

// UserID reads the user id of an unexpired session value. The value is not trusted until Check
// has verified it against that user.
func (s *Sessions) UserID(value string) (int64, error) {
	buf, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(buf) != sessionLen {
		return 0, ErrBadSession
	}
	if s.now().Unix() >= int64(binary.BigEndian.Uint64(buf[8:16])) {
		return 0, ErrBadSession
	}
	return int64(binary.BigEndian.Uint64(buf[0:8])), nil
}

// Check reports whether value is an unexpired session of u signed by this server.
func (s *Sessions) Check(value string, u store.User) bool {
	id, err := s.UserID(value)
	if err != nil || id != u.ID {
		return false
	}
	buf, _ := base64.RawURLEncoding.DecodeString(value)
	return hmac.Equal(buf[16:], s.mac(buf[:16], u.PasswordHash))
}

func (s *Sessions) mac(payload []byte, passwordHash string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	m.Write([]byte(passwordHash))
	return m.Sum(nil)
}
