package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// sessionCookie names the web UI's session cookie.
const sessionCookie = "mailsync_session"

// access is who may call a route.
type access int

const (
	public access = iota // anyone
	member               // any signed-in user
	admin                // admins only
)

type userKey struct{}

// userFrom returns the signed-in user of a request that passed an access check.
func userFrom(ctx context.Context) store.User {
	u, _ := ctx.Value(userKey{}).(store.User)
	return u
}

var errUnauthenticated = errors.New("not signed in")

// authenticate finds the user behind a request's bearer token or session cookie. It returns
// errUnauthenticated when there is none or it is not valid; other errors are the database's.
func (s *Server) authenticate(r *http.Request) (store.User, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || !auth.LooksLikeToken(token) {
			return store.User{}, errUnauthenticated
		}
		hash := auth.HashToken(token)
		if u, ok := s.tokens.get(hash); ok {
			return u, nil
		}
		u, err := s.store.UserByToken(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return store.User{}, errUnauthenticated
		}
		if err != nil {
			return store.User{}, err
		}
		s.tokens.put(hash, u)
		return u, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return store.User{}, errUnauthenticated
	}
	sess, err := s.cfg.Sessions.Parse(c.Value)
	if err != nil {
		return store.User{}, errUnauthenticated
	}
	// The row, not the cookie, decides: logout and revocation delete it.
	u, err := s.store.UserBySession(r.Context(), sess.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, errUnauthenticated
	}
	if err != nil {
		return store.User{}, err
	}
	if !s.cfg.Sessions.Check(c.Value, u) {
		return store.User{}, errUnauthenticated
	}
	return u, nil
}

// check applies acc to r: the user when allowed, else the status and message to answer.
func (s *Server) check(r *http.Request, acc access) (store.User, int, string) {
	if acc == public {
		return store.User{}, 0, ""
	}
	u, err := s.authenticate(r)
	switch {
	case errors.Is(err, errUnauthenticated):
		return store.User{}, http.StatusUnauthorized, "sign in first: send an API token (Authorization: Bearer ...) or a session cookie from POST /api/login"
	case err != nil:
		s.log.Error("httpapi: authentication failed", "err", err)
		return store.User{}, http.StatusServiceUnavailable, "cannot check credentials right now: the database does not answer"
	case acc == admin && !u.IsAdmin:
		return store.User{}, http.StatusForbidden, "this is for administrators only"
	}
	return u, 0, ""
}

// requireHuma is the access check of a huma operation. It runs before the input is parsed, so
// a stranger learns nothing from validation errors.
func (s *Server) requireHuma(acc access) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		r, _ := humago.Unwrap(ctx)
		u, status, msg := s.check(r, acc)
		if status != 0 {
			if status == http.StatusUnauthorized {
				ctx.SetHeader("WWW-Authenticate", `Bearer realm="mailsync"`)
			}
			_ = huma.WriteErr(s.api, ctx, status, msg)
			return
		}
		if acc != public {
			ctx = huma.WithValue(ctx, userKey{}, u)
		}
		next(ctx)
	}
}

// requirePlain is requireHuma for plain handlers (SSE, raw message bytes).
func (s *Server) requirePlain(acc access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, status, msg := s.check(r, acc)
		if status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mailsync"`)
			}
			writeProblem(w, status, msg)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	}
}

// UserJSON is a user as the API shows it.
type UserJSON struct {
	ID      int64  `json:"id"`
	Email   string `json:"email"`
	IsAdmin bool   `json:"is_admin"`
}

func userJSON(u store.User) UserJSON { return UserJSON{ID: u.ID, Email: u.Email, IsAdmin: u.IsAdmin} }

type loginInput struct {
	Body struct {
		Email    string `json:"email" minLength:"1" maxLength:"320" doc:"The user's email."`
		Password string `json:"password" minLength:"1" maxLength:"1024" writeOnly:"true" doc:"The user's password."`
	}
}

type loginOutput struct {
	SetCookie http.Cookie `header:"Set-Cookie"`
	Body      UserJSON
}

func (s *Server) login(ctx context.Context, in *loginInput) (*loginOutput, error) {
	email := strings.ToLower(strings.TrimSpace(in.Body.Email))
	release, err := s.enterLogin(ctx, clientAddr(ctx), email)
	if err != nil {
		return nil, err
	}
	defer release()
	u, err := s.store.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	hash := u.PasswordHash
	if err != nil {
		// Spend the same time on an unknown email as on a wrong password: timing must not tell
		// which emails have accounts.
		hash = s.dummyHash()
	}
	ok, verr := auth.VerifyPassword(hash, in.Body.Password)
	if verr != nil {
		s.log.Error("httpapi: stored password hash is unreadable", "user", u.ID, "err", verr)
	}
	if err != nil || !ok {
		s.guard.Failed(clientAddr(ctx), email)
		return nil, huma.Error401Unauthorized("wrong email or password")
	}
	s.guard.Succeeded(clientAddr(ctx), email)
	value, sess := s.cfg.Sessions.Issue(u)
	if err := s.store.CreateSession(ctx, sess.ID, u.ID, sess.Expires); err != nil {
		return nil, err
	}
	return &loginOutput{SetCookie: s.cookie(value, sess.Expires), Body: userJSON(u)}, nil
}

// enterLogin lets a login attempt check its password: within the address's limits, after the
// email's soft delay, and holding one of the password gate's slots (release it when the check is
// done). It answers 429 past a limit and 503 when the gate stays full; either has Retry-After.
func (s *Server) enterLogin(ctx context.Context, addr, email string) (release func(), err error) {
	ok, wait, delay := s.guard.Begin(addr, email)
	if !ok {
		return nil, huma.ErrorWithHeaders(huma.Error429TooManyRequests("too many login attempts; try again in "+wait.Round(time.Second).String()),
			http.Header{"Retry-After": {retryAfter(wait)}})
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.guard.Abandoned(addr, email)
			return nil, ctx.Err()
		}
	}
	release, err = s.gate.Enter(ctx)
	if err != nil {
		s.guard.Abandoned(addr, email)
		if errors.Is(err, auth.ErrBusy) {
			return nil, huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("too many logins at once; try again in a moment"),
				http.Header{"Retry-After": {retryAfter(s.gate.Wait())}})
		}
		return nil, err
	}
	return release, nil
}

// dummyHash is a valid hash of nothing anyone knows, verified against when the email is unknown.
func (s *Server) dummyHash() string {
	s.dummyOnce.Do(func() {
		s.dummy, _ = auth.HashPassword("no such user", s.cfg.PasswordParams)
	})
	return s.dummy
}

func (s *Server) cookie(value string, expires time.Time) http.Cookie {
	return http.Cookie{Name: sessionCookie, Value: value, Path: "/", Expires: expires, HttpOnly: true,
		Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode}
}

type logoutInput struct {
	Session string `cookie:"mailsync_session" doc:"The session to end; without one, logout only clears the cookie."`
}

type logoutOutput struct {
	SetCookie http.Cookie `header:"Set-Cookie"`
}

// logout ends the session server-side, so the cookie stops working at once wherever it was
// copied, and clears it in the browser. Its id is unguessable, so whoever holds the cookie may
// end it; a cookie that does not parse is only cleared.
func (s *Server) logout(ctx context.Context, in *logoutInput) (*logoutOutput, error) {
	if sess, err := s.cfg.Sessions.Parse(in.Session); err == nil {
		if err := s.store.DeleteSession(ctx, sess.ID); err != nil {
			return nil, err
		}
	}
	c := s.cookie("", time.Unix(0, 0))
	c.MaxAge = -1
	return &logoutOutput{SetCookie: c}, nil
}

type meOutput struct{ Body UserJSON }

func (s *Server) me(ctx context.Context, _ *struct{}) (*meOutput, error) {
	return &meOutput{Body: userJSON(userFrom(ctx))}, nil
}

type addrKey struct{}

// withClientAddr records the client's address for the login limits. It is the connection's
// peer: a deployment behind a proxy shares one bucket per proxy, which errs on the safe side.
func withClientAddr(ctx huma.Context, next func(huma.Context)) {
	host, _, err := net.SplitHostPort(ctx.RemoteAddr())
	if err != nil {
		host = ctx.RemoteAddr()
	}
	next(huma.WithValue(ctx, addrKey{}, host))
}

func clientAddr(ctx context.Context) string {
	a, _ := ctx.Value(addrKey{}).(string)
	return a
}

func retryAfter(d time.Duration) string {
	secs := int(d.Round(time.Second) / time.Second)
	return strconv.Itoa(max(secs, 1))
}
