package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
)

// login signs in through the API and returns the session cookie as request header arguments.
func (e *env) login(u user, password string) []string {
	e.t.Helper()
	r := e.request(user{}, "POST", "/api/login", map[string]string{"email": u.Email, "password": password}).want(e.t, 200)
	for _, c := range r.Cookies() {
		if c.Name == httpapi.SessionCookie {
			return []string{"Cookie", httpapi.SessionCookie + "=" + c.Value}
		}
	}
	e.t.Fatal("login set no session cookie")
	return nil
}

// newToken makes another API token of u, as `mailsync token create` does.
func (e *env) newToken(u user) user {
	e.t.Helper()
	tok, hash := auth.NewToken()
	if _, err := e.store.CreateToken(context.Background(), u.ID, hash, "extra"); err != nil {
		e.t.Fatal(err)
	}
	u.Token = tok
	return u
}

// TestLogoutEndsTheSession: after logout the very same cookie is refused at once, and only that
// session ends.
func TestLogoutEndsTheSession(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		laptop := e.login(e.alice, e.alice.Password)
		phone := e.login(e.alice, e.alice.Password)
		e.request(user{}, "GET", "/api/me", nil, laptop...).want(t, 200)

		e.request(user{}, "POST", "/api/logout", nil, laptop...).want(t, 204)
		e.request(user{}, "GET", "/api/me", nil, laptop...).wantProblem(t, http.StatusUnauthorized)
		e.request(user{}, "GET", "/api/accounts", nil, laptop...).wantProblem(t, http.StatusUnauthorized)
		e.request(user{}, "GET", "/api/me", nil, phone...).want(t, 200)

		// Logging out twice, or with a cookie that is no session, is harmless.
		e.request(user{}, "POST", "/api/logout", nil, laptop...).want(t, 204)
		e.request(user{}, "POST", "/api/logout", nil, "Cookie", httpapi.SessionCookie+"=forged").want(t, 204)
		e.request(user{}, "GET", "/api/me", nil, phone...).want(t, 200)
	})
}

// TestAdminRevokesCredentials: the operator's routes end sessions and tokens at once on this
// instance (the token cache is forgotten, not waited out), and non-admins get 403.
func TestAdminRevokesCredentials(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, func(c *instance.Config) { c.API.TokenCacheTTL = time.Minute })
		alice := fmt.Sprintf("/api/users/%d", e.alice.ID)
		bob := fmt.Sprintf("/api/users/%d", e.bob.ID)

		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/api/users", nil},
			{"DELETE", bob, nil},
			{"PUT", bob + "/password", map[string]string{"password": "a new long password"}},
			{"DELETE", bob + "/sessions", nil},
			{"GET", bob + "/tokens", nil},
			{"DELETE", bob + "/tokens/1", nil},
		} {
			e.request(e.alice, r.method, r.path, r.body).wantProblem(t, http.StatusForbidden)
			e.request(user{}, r.method, r.path, r.body).wantProblem(t, http.StatusUnauthorized)
		}

		var users []httpapi.AdminUserJSON
		e.request(e.admin, "GET", "/api/users", nil).want(t, 200).json(t, &users)
		if len(users) != 3 || users[1].Email != e.alice.Email || users[1].IsAdmin {
			t.Fatalf("users %+v", users)
		}

		// One token revoked: it stops at once, alice's other token goes on.
		second := e.newToken(e.alice)
		e.request(e.alice, "GET", "/api/me", nil).want(t, 200) // cached now
		var toks []httpapi.TokenJSON
		e.request(e.admin, "GET", alice+"/tokens", nil).want(t, 200).json(t, &toks)
		if len(toks) != 2 || toks[0].LastUsedAt == nil || toks[1].LastUsedAt != nil {
			t.Fatalf("alice's tokens %+v, want the used one and the new one", toks)
		}
		e.request(e.admin, "DELETE", fmt.Sprintf("%s/tokens/%d", alice, toks[0].ID), nil).want(t, 204)
		e.request(e.alice, "GET", "/api/me", nil).wantProblem(t, http.StatusUnauthorized)
		e.request(second, "GET", "/api/me", nil).want(t, 200)
		e.request(e.admin, "DELETE", fmt.Sprintf("%s/tokens/%d", bob, toks[1].ID), nil).wantProblem(t, http.StatusNotFound)

		// A new password ends every session and token of alice's, and only hers.
		cookie := e.login(e.alice, e.alice.Password)
		bobCookie := e.login(e.bob, e.bob.Password)
		e.request(e.admin, "PUT", alice+"/password", map[string]string{"password": "short"}).wantProblem(t, 422)
		var rev httpapi.RevokedJSON
		e.request(e.admin, "PUT", alice+"/password", map[string]string{"password": "a new long password"}).want(t, 200).json(t, &rev)
		if rev != (httpapi.RevokedJSON{Sessions: 1, Tokens: 1}) {
			t.Fatalf("password change ended %+v, want alice's session and token", rev)
		}
		e.request(user{}, "GET", "/api/me", nil, cookie...).wantProblem(t, http.StatusUnauthorized)
		e.request(second, "GET", "/api/me", nil).wantProblem(t, http.StatusUnauthorized)
		e.request(user{}, "POST", "/api/login", map[string]string{"email": e.alice.Email, "password": e.alice.Password}).wantProblem(t, 401)
		e.request(user{}, "GET", "/api/me", nil, e.login(e.alice, "a new long password")...).want(t, 200)
		e.request(user{}, "GET", "/api/me", nil, bobCookie...).want(t, 200)

		// Revocation without a new password.
		e.request(e.bob, "GET", "/api/me", nil).want(t, 200)
		e.request(e.admin, "DELETE", bob+"/sessions", nil).want(t, 200).json(t, &rev)
		if rev != (httpapi.RevokedJSON{Sessions: 1, Tokens: 1}) {
			t.Fatalf("revocation ended %+v", rev)
		}
		e.request(e.bob, "GET", "/api/me", nil).wantProblem(t, http.StatusUnauthorized)
		e.request(user{}, "GET", "/api/me", nil, bobCookie...).wantProblem(t, http.StatusUnauthorized)

		// Deleting a user takes their accounts; an admin cannot delete themselves.
		bobs := e.newToken(e.bob)
		a := e.addAccount(bobs, "bob's")
		e.request(e.admin, "DELETE", bob, nil).want(t, 204)
		e.request(bobs, "GET", "/api/me", nil).wantProblem(t, http.StatusUnauthorized)
		if _, err := e.store.Account(context.Background(), a.ID); err == nil {
			t.Fatal("the deleted user's account is still there")
		}
		e.request(e.admin, "DELETE", bob, nil).wantProblem(t, http.StatusNotFound)
		e.request(e.admin, "DELETE", fmt.Sprintf("/api/users/%d", e.admin.ID), nil).wantProblem(t, http.StatusConflict)
	})
}

// Setting a password hashes it like a login checks one: with every slot of the gate taken, the
// admin route waits its turn and then answers 503, instead of running one more argon2id.
func TestSetPasswordTakesAGateSlot(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, func(c *instance.Config) { c.API.LoginConcurrency, c.API.LoginWait = 1, 100*time.Millisecond })
		release, err := e.srv.EnterPasswordGate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/api/users/%d/password", e.alice.ID)
		body := map[string]string{"password": "a new long password"}
		e.request(e.admin, "PUT", path, body).wantProblem(t, http.StatusServiceUnavailable)
		release()
		e.request(e.admin, "PUT", path, body).want(t, 200)
	})
}
