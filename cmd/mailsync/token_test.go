package main

import (
	"context"
	"strings"
	"testing"

	"mailsync/internal/auth"
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
