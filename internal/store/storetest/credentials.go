package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailsync/internal/store"
)

// The revocable credentials: sessions, password changes, token revocation, user deletion.

func testCredentials(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	ann, err := e.store.CreateUser(ctx, "ann@example.test", "old-hash", false)
	if err != nil {
		t.Fatal(err)
	}
	ben, err := e.store.CreateUser(ctx, "ben@example.test", "hash", true)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	for _, s := range []struct {
		id      string
		user    int64
		expires time.Time
	}{{"ann-1", ann.ID, later}, {"ann-2", ann.ID, later}, {"ann-expired", ann.ID, time.Now().Add(-time.Second)}, {"ben-1", ben.ID, later}} {
		if err := e.store.CreateSession(ctx, s.id, s.user, s.expires); err != nil {
			t.Fatal(err)
		}
	}
	wantSession := func(id string, user int64) {
		t.Helper()
		u, err := e.store.UserBySession(ctx, id)
		if user == 0 {
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("session %s: got %+v, %v; want ErrNotFound", id, u, err)
			}
			return
		}
		if err != nil || u.ID != user {
			t.Fatalf("session %s: got %+v, %v; want user %d", id, u, err, user)
		}
	}
	wantSession("ann-1", ann.ID)
	wantSession("ann-expired", 0)
	wantSession("nope", 0)

	// Logout ends one session.
	if err := e.store.DeleteSession(ctx, "ann-1"); err != nil {
		t.Fatal(err)
	}
	wantSession("ann-1", 0)
	wantSession("ann-2", ann.ID)
	if err := e.store.DeleteSession(ctx, "ann-1"); err != nil {
		t.Fatalf("ending a gone session: %v", err)
	}

	// A password change ends every session and token of that user, and only of that user.
	for _, h := range []string{"ann-tok-1", "ann-tok-2"} {
		if _, err := e.store.CreateToken(ctx, ann.ID, h, "t"); err != nil {
			t.Fatal(err)
		}
	}
	benTok, err := e.store.CreateToken(ctx, ben.ID, "ben-tok", "t")
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.store.SetPassword(ctx, ann.ID, "new-hash")
	if err != nil {
		t.Fatal(err)
	}
	// The expired row may or may not have been purged by a later login: at least the live one ended.
	if r.Tokens != 2 || r.Sessions < 1 {
		t.Fatalf("SetPassword ended %+v, want 2 tokens and ann's live session", r)
	}
	wantSession("ann-2", 0)
	wantSession("ben-1", ben.ID)
	if u, err := e.store.UserByID(ctx, ann.ID); err != nil || u.PasswordHash != "new-hash" {
		t.Fatalf("after SetPassword: %+v, %v", u, err)
	}
	if _, err := e.store.UserByToken(ctx, "ann-tok-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a token survived the password change: %v", err)
	}
	if _, err := e.store.SetPassword(ctx, ben.ID+ann.ID+100, "h"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPassword of nobody: %v", err)
	}

	// Revocation without a password change; token revocation by id returns the hash.
	if _, err := e.store.CreateToken(ctx, ben.ID, "ben-tok-2", "t"); err != nil {
		t.Fatal(err)
	}
	all, err := e.store.Tokens(ctx, 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("every user's tokens: %+v, %v; want ben's two", all, err)
	}
	if _, err := e.store.RevokeToken(ctx, ann.ID, benTok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking ben's token as ann's: %v", err)
	}
	if hash, err := e.store.RevokeToken(ctx, 0, benTok.ID); err != nil || hash != "ben-tok" {
		t.Fatalf("RevokeToken = %q, %v", hash, err)
	}
	r, err = e.store.RevokeUser(ctx, ben.ID)
	if err != nil || r != (store.Revoked{Sessions: 1, Tokens: 1}) {
		t.Fatalf("RevokeUser = %+v, %v; want one session and one token", r, err)
	}
	wantSession("ben-1", 0)

	// Deleting a user takes their accounts along.
	a, err := e.store.CreateAccount(ctx, store.Account{UserID: ann.ID, Name: "a", IMAPHost: "h", IMAPPort: 143,
		TLSMode: "none", Login: "l", SecretEnc: []byte("s"), Restricted: true})
	if err != nil || !a.Restricted {
		t.Fatalf("CreateAccount: %+v, %v", a, err)
	}
	if err := e.store.CreateSession(ctx, "ann-3", ann.ID, later); err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteUser(ctx, ann.ID); err != nil {
		t.Fatal(err)
	}
	wantSession("ann-3", 0)
	if _, err := e.store.Account(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the deleted user's account: %v", err)
	}
	if err := e.store.DeleteUser(ctx, ann.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting a deleted user: %v", err)
	}
	users, err := e.store.Users(ctx)
	if err != nil || len(users) != 1 || users[0].ID != ben.ID {
		t.Fatalf("Users = %+v, %v; want ben alone", users, err)
	}
}
