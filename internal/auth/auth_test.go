package auth

import (
	"strings"
	"testing"
	"time"

	"mailsync/internal/store"
)

// cheap keeps the tests fast; the format and the code path are the same as with DefaultParams.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	if ok, err := VerifyPassword(h, "correct horse"); !ok || err != nil {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, err := VerifyPassword(h, "correct horsE"); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	h2, _ := HashPassword("correct horse", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if _, err := HashPassword("", cheap); err == nil {
		t.Fatal("an empty password was hashed")
	}
}

func TestVerifyPasswordRejectsMalformedHashes(t *testing.T) {
	for _, h := range []string{
		"", "x", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!!$aGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA$extra",
	} {
		if ok, err := VerifyPassword(h, "pw"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	good, _ := HashPassword("pw", cheap)
	f.Add(good, "pw")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$$", "")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		ok, err := VerifyPassword(hash, pw)
		if ok && err != nil {
			t.Fatalf("ok with an error: %v", err)
		}
		if ok && pw != "pw" {
			// Only the seed's password can verify: the fuzzer cannot compute argon2 hashes.
			t.Fatalf("password %q verified against %q", pw, hash)
		}
	})
}

func TestTokens(t *testing.T) {
	tok, hash := NewToken()
	if !LooksLikeToken(tok) || HashToken(tok) != hash || strings.Contains(hash, tok) {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	tok2, _ := NewToken()
	if tok == tok2 {
		t.Fatal("two tokens are equal")
	}
	for _, s := range []string{"", "mst_", "Bearer x", "abc" + tok} {
		if LooksLikeToken(s) {
			t.Errorf("LooksLikeToken(%q) = true", s)
		}
	}
	if string(DeriveKey([]byte("k"), "session")) == string(DeriveKey([]byte("k"), "other")) {
		t.Fatal("two purposes derive the same key")
	}
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSessions(DeriveKey([]byte("server key"), "session"), time.Hour)
	s.Now = func() time.Time { return now }
	u := store.User{ID: 42, PasswordHash: "$argon2id$a"}
	v, sess := s.Issue(u)
	if !sess.Expires.Equal(now.Add(time.Hour)) || sess.UserID != 42 || len(sess.ID) != 32 {
		t.Fatalf("issued %+v", sess)
	}
	if got, err := s.Parse(v); got != sess || err != nil {
		t.Fatalf("Parse = %+v, %v; want %+v", got, err, sess)
	}
	if v2, sess2 := s.Issue(u); v2 == v || sess2.ID == sess.ID {
		t.Fatal("two sessions of one user have the same value or id: the id is not random")
	}
	if !s.Check(v, u) {
		t.Fatal("a fresh session does not check")
	}
	for name, tc := range map[string]struct {
		value string
		user  store.User
	}{
		"other user":       {v, store.User{ID: 43, PasswordHash: u.PasswordHash}},
		"password changed": {v, store.User{ID: 42, PasswordHash: "$argon2id$b"}},
		"tampered":         {v[:10] + string('A'+(v[10]-'A'+1)%26) + v[11:], u},
		"garbage":          {"not base64 !", u},
		"empty":            {"", u},
	} {
		if s.Check(tc.value, tc.user) {
			t.Errorf("%s: Check = true", name)
		}
	}
	other := NewSessions(DeriveKey([]byte("another server"), "session"), time.Hour)
	other.Now = s.Now
	if other.Check(v, u) {
		t.Error("a session signed under another key checks")
	}
	now = now.Add(time.Hour)
	if s.Check(v, u) {
		t.Error("an expired session checks")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(10*time.Second, 3)
	l.Now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.Allow("ip"); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	ok, wait := l.Allow("ip")
	if ok || wait != 10*time.Second {
		t.Fatalf("4th attempt: ok=%v wait=%v, want refused for 10s", ok, wait)
	}
	if ok, _ := l.Allow("other"); !ok {
		t.Fatal("another key is limited by the first one")
	}
	now = now.Add(10 * time.Second)
	if ok, _ := l.Allow("ip"); !ok {
		t.Fatal("refused after the refill interval")
	}
	if ok, _ := l.Allow("ip"); ok {
		t.Fatal("two attempts allowed after one refill")
	}
}
