package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailsync/internal/store"
)

// SeedOAuthAccount creates a user and an OAuth2 account for them with sealed as its token set.
func SeedOAuthAccount(tb testing.TB, s *store.Store, login, host string, port int, sealed []byte, expiry time.Time) store.Account {
	tb.Helper()
	ctx := context.Background()
	u, err := s.CreateUser(ctx, login+"."+time.Now().Format("150405.000000000")+"@example.test", "x", false)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := s.CreateAccount(ctx, store.Account{
		UserID: u.ID, Name: "oauth", IMAPHost: host, IMAPPort: port, TLSMode: "none", Login: login,
		SecretEnc: sealed, AuthKind: store.AuthOAuth2, OAuthProvider: "test", TokenExpiry: expiry,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// testOAuthRefreshFence: a token refresh is a single-writer operation on the account row. One
// claim per version wins; the loser's store is refused; a stale version can neither claim nor
// mark the account; an expired lease may be taken over; reauth_required leaves the schedule and
// "sign in again" brings the account back with a new version; UpdateAccount never rewrites an
// OAuth2 account's token set.
func testOAuthRefreshFence(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	s := e.store
	a := SeedOAuthAccount(t, s, "alice", "127.0.0.1", 143, []byte("v0"), time.Now().Add(time.Hour))
	if !a.IsOAuth2() || a.AuthState != store.AuthOK || a.TokenVersion != 0 || a.TokenExpiry.IsZero() {
		t.Fatalf("new OAuth2 account = %+v", a)
	}
	claim := func(version int64, owner string, lease time.Duration) bool {
		t.Helper()
		ok, err := s.ClaimTokenRefresh(ctx, a.ID, version, owner, lease)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(0, "A", time.Minute) {
		t.Fatal("the first claim lost")
	}
	if claim(0, "B", time.Minute) {
		t.Fatal("a second claim won while the lease was held")
	}
	if err := s.StoreRefreshedToken(ctx, a.ID, 0, "B", []byte("by B"), time.Now()); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a store without the lease = %v, want ErrConflict", err)
	}
	expiry := time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)
	if err := s.StoreRefreshedToken(ctx, a.ID, 0, "A", []byte("v1"), expiry); err != nil {
		t.Fatal(err)
	}
	got, err := s.Account(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.SecretEnc) != "v1" || got.TokenVersion != 1 || !got.TokenExpiry.Equal(expiry) {
		t.Fatalf("after the refresh: secret %q version %d expiry %v", got.SecretEnc, got.TokenVersion, got.TokenExpiry)
	}
	if claim(0, "C", time.Minute) {
		t.Fatal("a claim on a stale version won")
	}
	// A lease that expired (its refresher died) may be taken over.
	if !claim(1, "D", time.Millisecond) {
		t.Fatal("claim at version 1 lost")
	}
	time.Sleep(20 * time.Millisecond)
	if !claim(1, "E", time.Minute) {
		t.Fatal("an expired lease was not taken over")
	}
	if err := s.ReleaseTokenRefresh(ctx, a.ID, "E"); err != nil {
		t.Fatal(err)
	}

	// UpdateAccount leaves the token set alone.
	got.Name, got.SecretEnc = "renamed", []byte("stale copy")
	up, err := s.UpdateAccount(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if string(up.SecretEnc) != "v1" || up.Name != "renamed" {
		t.Fatalf("UpdateAccount of an OAuth2 account: secret %q name %q", up.SecretEnc, up.Name)
	}

	got.SyncInterval = time.Minute
	if _, err := s.UpdateAccount(ctx, got); err != nil {
		t.Fatal(err)
	}
	if marked, err := s.MarkReauthRequired(ctx, a.ID, 0, "stale"); err != nil || marked {
		t.Fatalf("MarkReauthRequired at a stale version = %v, %v; want false", marked, err)
	}
	if marked, err := s.MarkReauthRequired(ctx, a.ID, 1, "sign in again"); err != nil || !marked {
		t.Fatalf("MarkReauthRequired = %v, %v; want true", marked, err)
	}
	if marked, _ := s.MarkReauthRequired(ctx, a.ID, 1, "again"); marked {
		t.Fatal("MarkReauthRequired counted twice")
	}
	if claim(1, "F", time.Minute) {
		t.Fatal("a reauth_required account's refresh was claimed")
	}
	if n, err := s.ReauthRequired(ctx, 0); err != nil || n != 1 {
		t.Fatalf("ReauthRequired = %d, %v; want 1", n, err)
	}
	_, schedules, err := s.Schedules(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range schedules {
		if sc.AccountID == a.ID {
			t.Fatal("a reauth_required account is scheduled")
		}
	}
	back, err := s.ReplaceOAuthToken(ctx, a.ID, "test", "alice", []byte("v2"), expiry)
	if err != nil {
		t.Fatal(err)
	}
	if back.ReauthRequired() || back.TokenVersion != 2 || back.LastError != "" || string(back.SecretEnc) != "v2" {
		t.Fatalf("after signing in again: %+v", back)
	}
	if _, err := s.ReplaceOAuthToken(ctx, a.ID+1000, "test", "x", nil, expiry); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReplaceOAuthToken of a missing account = %v, want ErrNotFound", err)
	}
}
