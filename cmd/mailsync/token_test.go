package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

func TestUserAddAndTokenCreate(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		const pw = "a long enough password"
		code, out, errOut := mailsyncIn(t, pw+"\n", "--db", dsn, "user", "add", "Ann@Example.test", "--admin", "--password-stdin")
		if code != 0 || !strings.Contains(out, "ann@example.test (admin)") {
			t.Fatalf("user add: %d %q %q", code, out, errOut)
		}
		if strings.Contains(out+errOut, pw) {
			t.Fatal("user add printed the password")
		}
		for _, tc := range []struct {
			stdin string
			args  []string
			want  string
		}{
			{pw, []string{"user", "add", "ann@example.test", "--password-stdin"}, "already exists"},
			{"", []string{"user", "add", "x@example.test", "--password-stdin"}, "nothing on stdin"},
			{"short\n", []string{"user", "add", "x@example.test", "--password-stdin"}, "at least"},
			{pw, []string{"user", "add", "x@example.test"}, "password-stdin"},
			{"", []string{"token", "create", "nobody@example.test"}, "no user"},
		} {
			code, _, errOut := mailsyncIn(t, tc.stdin, append([]string{"--db", dsn}, tc.args...)...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: exit %d, stderr %q, want it to say %q", tc.args, code, errOut, tc.want)
			}
		}

		code, out, errOut = mailsyncIn(t, "", "--db", dsn, "token", "create", "ann@example.test")
		if code != 0 {
			t.Fatalf("token create: %d %q", code, errOut)
		}
		token := strings.TrimSuffix(out, "\n")
		if !auth.LooksLikeToken(token) || strings.Contains(token, "\n") {
			t.Fatalf("stdout %q is not just a token", out)
		}
		s := storetest.OpenDSN(t, dsn, false)
		u, err := s.UserByToken(context.Background(), auth.HashToken(token))
		if err != nil || u.Email != "ann@example.test" || !u.IsAdmin {
			t.Fatalf("the printed token does not sign in as ann: %+v %v", u, err)
		}
		ok, err := auth.VerifyPassword(u.PasswordHash, pw)
		if err != nil || !ok {
			t.Fatalf("the stored hash does not verify the password: %v %v", ok, err)
		}
	})
}

// TestRevocationCommands: token list and revoke, user passwd (which ends every session and token
// of that user, and only theirs) and user delete.
func TestRevocationCommands(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		ctx := context.Background()
		const pw = "a long enough password"
		for _, email := range []string{"ann@example.test", "ben@example.test"} {
			if code, _, errOut := mailsyncIn(t, pw+"\n", "--db", dsn, "user", "add", email, "--password-stdin"); code != 0 {
				t.Fatalf("user add: %s", errOut)
			}
		}
		tokens := map[string]string{}
		for _, who := range []string{"ann@example.test", "ann@example.test", "ben@example.test"} {
			code, out, errOut := mailsync(t, "--db", dsn, "token", "create", who, "--name", "for-"+who)
			if code != 0 {
				t.Fatalf("token create: %s", errOut)
			}
			tokens[strings.TrimSpace(out)] = who
		}
		s := storetest.OpenDSN(t, dsn, false)
		signsIn := func(token string) bool {
			_, err := s.UserByToken(ctx, auth.HashToken(token))
			return err == nil
		}

		code, out, errOut := mailsync(t, "--db", dsn, "token", "list")
		if code != 0 || strings.Count(out, "for-ann@example.test") != 2 || !strings.Contains(out, "ben@example.test") || !strings.Contains(out, "never") {
			t.Fatalf("token list: %d %q %q", code, out, errOut)
		}
		for tok := range tokens {
			if strings.Contains(out, tok) {
				t.Fatal("token list printed a token")
			}
		}
		code, out, _ = mailsync(t, "--db", dsn, "token", "list", "ben@example.test")
		if code != 0 || strings.Contains(out, "ann@") || !strings.Contains(out, "for-ben") {
			t.Fatalf("token list ben: %q", out)
		}
		ben, err := s.UserByEmail(ctx, "ben@example.test")
		if err != nil {
			t.Fatal(err)
		}
		bens, err := s.Tokens(ctx, ben.ID)
		if err != nil || len(bens) != 1 {
			t.Fatalf("ben's tokens %v %v", bens, err)
		}
		if code, out, errOut := mailsync(t, "--db", dsn, "token", "revoke", strconv.FormatInt(bens[0].ID, 10)); code != 0 || !strings.Contains(out, "revoked") {
			t.Fatalf("token revoke: %d %q %q", code, out, errOut)
		}
		if code, _, errOut := mailsync(t, "--db", dsn, "token", "revoke", strconv.FormatInt(bens[0].ID, 10)); code == 0 || !strings.Contains(errOut, "no token") {
			t.Fatalf("revoking twice: %d %q", code, errOut)
		}
		for tok, who := range tokens {
			if signsIn(tok) != (who == "ann@example.test") {
				t.Fatalf("after revoking ben's token, %s's token signs in: %v", who, signsIn(tok))
			}
		}

		// passwd: ann's sessions and tokens end; ben's session does not.
		ann, err := s.UserByEmail(ctx, "ann@example.test")
		if err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Hour)
		if err := s.CreateSession(ctx, "ann-session", ann.ID, later); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, "ben-session", ben.ID, later); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = mailsyncIn(t, "another long password\n", "--db", dsn, "user", "passwd", "ann@example.test", "--password-stdin")
		if code != 0 || !strings.Contains(out, "1 sessions and 2 API tokens ended") {
			t.Fatalf("user passwd: %d %q %q", code, out, errOut)
		}
		for tok := range tokens {
			if signsIn(tok) {
				t.Fatal("a token signs in after the password change")
			}
		}
		if _, err := s.UserBySession(ctx, "ann-session"); err == nil {
			t.Fatal("ann's session survived her password change")
		}
		if _, err := s.UserBySession(ctx, "ben-session"); err != nil {
			t.Fatalf("ben's session ended with ann's password change: %v", err)
		}
		ann, _ = s.UserByEmail(ctx, "ann@example.test")
		if ok, _ := auth.VerifyPassword(ann.PasswordHash, "another long password"); !ok {
			t.Fatal("the new password does not verify")
		}
		if code, _, errOut := mailsyncIn(t, "short\n", "--db", dsn, "user", "passwd", "ann@example.test", "--password-stdin"); code == 0 || !strings.Contains(errOut, "at least") {
			t.Fatalf("short password: %d %q", code, errOut)
		}

		// delete: refused without --yes, then the user and their accounts go.
		if _, err := s.CreateAccount(ctx, store.Account{UserID: ben.ID, Name: "a", IMAPHost: "h", IMAPPort: 143, TLSMode: "none", Login: "l", SecretEnc: []byte("s")}); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := mailsync(t, "--db", dsn, "user", "delete", "ben@example.test"); code == 0 || !strings.Contains(errOut, "1 accounts") || !strings.Contains(errOut, "--yes") {
			t.Fatalf("delete without --yes: %d %q", code, errOut)
		}
		if code, out, errOut := mailsync(t, "--db", dsn, "user", "delete", "ben@example.test", "--yes"); code != 0 || !strings.Contains(out, "with 1 accounts") {
			t.Fatalf("user delete: %d %q %q", code, out, errOut)
		}
		if _, err := s.UserBySession(ctx, "ben-session"); err == nil {
			t.Fatal("the deleted user's session survived")
		}
		if accts, _ := s.Accounts(ctx, 0); len(accts) != 0 {
			t.Fatalf("the deleted user's accounts survived: %+v", accts)
		}
		code, out, _ = mailsync(t, "--db", dsn, "user", "list")
		if code != 0 || strings.Contains(out, "ben@") || !strings.Contains(out, "ann@example.test") {
			t.Fatalf("user list: %q", out)
		}
	})
}
