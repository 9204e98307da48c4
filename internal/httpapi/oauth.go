package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"mailsync/internal/oauth"
	"mailsync/internal/store"
)

// OAuthLoginChecker tests an OAuth2 access token against the IMAP server before an OAuth2
// account (or its new sign-in) is stored. The sync engine is one.
type OAuthLoginChecker interface {
	CheckOAuthLogin(ctx context.Context, a store.Account, token string) error
}

// oauthFlowTTL is how long a started web sign-in may take.
const oauthFlowTTL = 15 * time.Minute

// ProviderJSON is an OAuth2 provider users may sign in with.
type ProviderJSON struct {
	Name  string `json:"name"`
	Label string `json:"label"`
}

type providersOutput struct {
	Body []ProviderJSON
}

// listProviders is the providers the operator configured credentials for: only those are offered.
func (s *Server) listProviders(context.Context, *struct{}) (*providersOutput, error) {
	out := []ProviderJSON{}
	if s.cfg.OAuth != nil {
		for _, p := range s.cfg.OAuth.Providers().List() {
			out = append(out, ProviderJSON{Name: p.Name, Label: p.Label})
		}
	}
	return &providersOutput{Body: out}, nil
}

// oauthStartBody starts a web sign-in: for a new account (name), or for an account that must
// sign in again (account_id).
type oauthStartBody struct {
	Provider  string `json:"provider"`
	Name      string `json:"name"`
	LoginHint string `json:"login_hint"`
	AccountID int64  `json:"account_id"`
}

// oauthStart answers the address of the provider's consent page, with a one-time state bound to
// the browser session and a PKCE challenge whose verifier stays on the server (sealed in the
// flow's row). A plain handler: it needs the session cookie itself, not only the user.
func (s *Server) oauthStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "a web sign-in needs a browser session: sign in to mailsync in the browser (API tokens cannot start one; the CLI has account add --oauth)")
		return
	}
	sess, err := s.cfg.Sessions.Parse(c.Value)
	if err != nil {
		writeProblem(w, http.StatusUnauthorized, "sign in first")
		return
	}
	var b oauthStartBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&b); err != nil {
		writeProblem(w, http.StatusBadRequest, "the body must be JSON: {provider, name, login_hint} or {account_id}")
		return
	}
	b.Name, b.LoginHint = strings.TrimSpace(b.Name), strings.TrimSpace(b.LoginHint)
	if b.AccountID != 0 {
		a, err := s.ownAccount(ctx, b.AccountID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !a.IsOAuth2() {
			writeProblem(w, http.StatusUnprocessableEntity, "this account signs in with a password: change it with its password instead")
			return
		}
		b.Provider, b.LoginHint, b.Name = a.OAuthProvider, a.Login, a.Name
	} else if b.Name == "" || len(b.Name) > 200 {
		writeProblem(w, http.StatusUnprocessableEntity, "give the account a name (1 to 200 characters)")
		return
	}
	var p *oauth.Provider
	if s.cfg.OAuth != nil {
		p = s.cfg.OAuth.Providers().Get(b.Provider)
	}
	if p == nil {
		writeProblem(w, http.StatusUnprocessableEntity, fmt.Sprintf("no provider %q is configured on this server", b.Provider))
		return
	}
	state, verifier := oauth.NewState(), oauth.NewVerifier()
	redirect := s.redirectURL(r)
	flow := store.OAuthFlow{
		State: state, SessionID: sess.ID, UserID: u.ID, Provider: p.Name, AccountID: b.AccountID, Name: b.Name,
		LoginHint: b.LoginHint, VerifierEnc: s.cfg.Box.Seal([]byte(verifier), flowContext(state, sess.ID)),
		RedirectURI: redirect, Expires: time.Now().Add(oauthFlowTTL),
	}
	if err := s.store.CreateOAuthFlow(ctx, flow); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{"url": p.AuthCodeURL(redirect, state, verifier, b.LoginHint)})
}

// flowContext binds a flow's sealed verifier to its state and session.
func flowContext(state, sessionID string) []byte {
	return []byte("oauth-flow:" + state + ":" + sessionID)
}

// redirectURL is where providers send the browser back: the operator's setting, else this
// server's own /oauth/callback as the request reached it.
func (s *Server) redirectURL(r *http.Request) string {
	if s.cfg.OAuthRedirectURL != "" {
		return s.cfg.OAuthRedirectURL
	}
	scheme := "http"
	if r.TLS != nil || s.cfg.SecureCookies || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/oauth/callback"
}

// oauthCallback finishes a web sign-in: the state must be one this browser session started and
// not yet used, the code is exchanged with the flow's PKCE verifier, the IMAP login is tried with
// the new token, and only then is the account saved (or its new sign-in stored, and a sync
// started: "Sign in again" resumes it). Every outcome goes back to the accounts page, with what
// went wrong in words.
func (s *Server) oauthCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	back := func(key, value string) {
		http.Redirect(w, r, "/#/accounts?"+url.Values{key: {value}}.Encode(), http.StatusSeeOther)
	}
	fail := func(msg string) { back("oauth_error", msg) }
	u, status, _ := s.check(r, member)
	if status != 0 {
		fail("Sign in to mailsync first, then add the account again.")
		return
	}
	ctx = context.WithValue(ctx, userKey{}, u)
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		fail("Sign in to mailsync in this browser first, then add the account again.")
		return
	}
	sess, err := s.cfg.Sessions.Parse(c.Value)
	q := r.URL.Query()
	var flow store.OAuthFlow
	if err == nil {
		flow, err = s.store.TakeOAuthFlow(ctx, q.Get("state"))
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && (flow.SessionID != sess.ID || flow.UserID != u.ID)) {
		s.log.Warn("httpapi: oauth callback refused: unknown, used, expired or foreign state", "user", u.ID)
		fail("This sign-in cannot be completed: its link is unknown, expired, already used or was started in another browser session. Start again.")
		return
	}
	if err != nil {
		s.log.Error("httpapi: oauth callback", "err", err)
		fail("The sign-in could not be completed: the database does not answer. Try again.")
		return
	}
	p := s.cfg.OAuth.Providers().Get(flow.Provider)
	if p == nil {
		fail(fmt.Sprintf("The provider %q is no longer configured on this server.", flow.Provider))
		return
	}
	if e := q.Get("error"); e != "" {
		fail(fmt.Sprintf("%s: %s.", p.Label, oauth.DescribeRefusal(e, q.Get("error_description"))))
		return
	}
	verifier, err := s.cfg.Box.Open(flow.VerifierEnc, flowContext(flow.State, flow.SessionID))
	if err != nil || q.Get("code") == "" {
		fail("This sign-in cannot be completed: it carries no authorization code, or its proof (PKCE) is missing. Start again.")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	ts, tok, err := p.Exchange(ctx, s.cfg.OAuth.HTTPClient(), flow.RedirectURI, q.Get("code"), string(verifier))
	if err != nil {
		s.log.Warn("httpapi: oauth code exchange refused", "provider", p.Name, "err", err)
		fail(fmt.Sprintf("%s did not accept the sign-in (%v). Start again.", p.Label, err))
		return
	}
	if ts.Refresh == "" {
		fail(fmt.Sprintf("%s gave no refresh token, so mailsync could not stay signed in. Start again (and allow offline access).", p.Label))
		return
	}
	login := oauth.Address(tok)
	if login == "" {
		login = flow.LoginHint
	}
	if login == "" {
		fail(fmt.Sprintf("%s did not say which mailbox you signed in to: give its address in the form and start again.", p.Label))
		return
	}
	a := store.Account{UserID: u.ID, Name: flow.Name, IMAPHost: p.IMAPHost, IMAPPort: p.IMAPPort, TLSMode: p.IMAPTLS,
		Login: login, AuthKind: store.AuthOAuth2, OAuthProvider: p.Name, TokenExpiry: ts.Expiry}
	var before store.Account
	if flow.AccountID != 0 {
		if before, err = s.ownAccount(ctx, flow.AccountID); err != nil {
			fail("The account to sign in again is gone.")
			return
		}
		if !strings.EqualFold(before.Login, login) {
			fail(fmt.Sprintf("You signed in as %s, but this account is %s: sign in again with %s.", login, before.Login, before.Login))
			return
		}
		a.IMAPHost, a.IMAPPort, a.TLSMode, a.Login = before.IMAPHost, before.IMAPPort, before.TLSMode, before.Login
	}
	checker, ok := s.cfg.Login.(OAuthLoginChecker)
	if !ok {
		fail("This server cannot test OAuth2 logins.")
		return
	}
	if err := checker.CheckOAuthLogin(ctx, a, ts.Access); err != nil {
		s.log.Warn("httpapi: imap login with a new oauth token refused", "provider", p.Name, "host", a.IMAPHost, "err", err)
		fail(fmt.Sprintf("%s signed you in, but the IMAP server %s refused the login of %s (%v). Is IMAP enabled for this mailbox? Nothing was saved.",
			p.Label, a.IMAPHost, login, err))
		return
	}
	sealed := ts.Seal(s.cfg.Box, a.Login, a.IMAPHost)
	if flow.AccountID != 0 {
		if _, err := s.store.ReplaceOAuthToken(ctx, before.ID, p.Name, a.Login, sealed, ts.Expiry); err != nil {
			s.log.Error("httpapi: store a new sign-in", "account", before.ID, "err", err)
			fail("The new sign-in could not be saved. Try again.")
			return
		}
		s.log.Info("httpapi: account signed in again", "account", before.ID, "user", u.ID, "provider", p.Name)
		if _, _, err := s.tasks.Start(ctx, before.ID, false); err != nil {
			s.log.Warn("httpapi: sync after signing in again", "account", before.ID, "err", err)
		}
		back("oauth_resumed", fmt.Sprint(before.ID))
		return
	}
	a.SecretEnc = sealed
	out, err := s.store.CreateAccount(ctx, a)
	if errors.Is(err, store.ErrConflict) {
		fail(fmt.Sprintf("You already have an account named %q: choose another name and start again.", a.Name))
		return
	}
	if err != nil {
		s.log.Error("httpapi: create oauth account", "err", err)
		fail("The account could not be saved. Try again.")
		return
	}
	s.log.Info("httpapi: oauth account added", "account", out.ID, "user", u.ID, "provider", p.Name)
	back("oauth_added", fmt.Sprint(out.ID))
}
