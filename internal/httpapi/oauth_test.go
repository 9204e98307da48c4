package httpapi_test

import (
	"context"
	"fmt"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailsync/internal/oauth"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

// TestOAuthAccountsInTheAPI: an OAuth2 account shows its kind, provider and state, never its
// tokens; its server and address cannot be patched; once reauth_required, Sync now answers a
// problem saying to sign in again and /api/health/sync warns; only configured providers are
// offered; a web sign-in needs a browser session, and a callback without one changes nothing.
func TestOAuthAccountsInTheAPI(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		ps, err := oauth.New(context.Background(), nil, oauth.Provider{Name: "test", Label: "Test", ClientID: "id",
			AuthURL: "http://127.0.0.1:1/authorize", TokenURL: "http://127.0.0.1:1/token", IMAPHost: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, dialect, func(c *instance.Config) { c.API.OAuth = oauth.NewTokens(c.Store, boxOf(t, c), ps, oauth.Options{}) })
		ctx := context.Background()
		sealed := oauth.TokenSet{Access: "at-secret-access", Refresh: "rt-secret-refresh", Expiry: time.Now().Add(time.Hour)}.
			Seal(e.box, "alice@example.test", "127.0.0.1")
		a, err := e.store.CreateAccount(ctx, store.Account{UserID: e.alice.ID, Name: "gmail", IMAPHost: "127.0.0.1", IMAPPort: 993,
			TLSMode: "tls", Login: "alice@example.test", SecretEnc: sealed, AuthKind: store.AuthOAuth2, OAuthProvider: "test"})
		if err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/api/accounts/%d", a.ID)
		r := e.request(e.alice, "GET", path, nil).want(t, 200)
		var got httpapi.AccountJSON
		r.json(t, &got)
		if got.AuthKind != "oauth2" || got.OAuthProvider != "test" || got.AuthState != "ok" || strings.Contains(string(r.body), "secret") {
			t.Errorf("GET %s = %s", path, r.body)
		}
		e.request(e.alice, "PATCH", path, map[string]any{"imap_host": "evil.example"}).wantProblem(t, 422)
		e.request(e.alice, "PATCH", path, map[string]any{"name": "Gmail"}).want(t, 200)

		var providers []httpapi.ProviderJSON
		e.request(e.alice, "GET", "/api/oauth/providers", nil).want(t, 200).json(t, &providers)
		if len(providers) != 1 || providers[0].Name != "test" || providers[0].Label != "Test" {
			t.Errorf("providers = %+v", providers)
		}
		e.request(e.alice, "POST", "/api/oauth/start", map[string]any{"provider": "test", "name": "x"}).wantProblem(t, 400) // a token, no session
		cb := e.request(user{}, "GET", "/oauth/callback?state=x&code=y", nil).Request.Response                              // the redirect, before it was followed
		if cb == nil || cb.StatusCode != http.StatusSeeOther || !strings.Contains(cb.Header.Get("Location"), "oauth_error=") {
			t.Errorf("callback without a session: %+v", cb)
		}

		if ok, err := e.store.MarkReauthRequired(ctx, a.ID, 0, "sign in again"); err != nil || !ok {
			t.Fatal(ok, err)
		}
		sync := e.request(e.alice, "POST", path+"/sync", map[string]any{})
		sync.wantProblem(t, http.StatusConflict)
		if !strings.Contains(string(sync.body), "sign in again") {
			t.Errorf("Sync now on a reauth_required account: %s", sync.body)
		}
		if n := storetest.CountTasks(t, e.store, a.ID); n != 0 {
			t.Errorf("%d tasks started for a reauth_required account", n)
		}
		var h httpapi.Health
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		if h.Status != "warn" || h.Checks["sync:reauthRequired"][0].Status != "warn" {
			t.Errorf("health with a reauth_required account: %+v", h)
		}
		if strings.Contains(e.logs.String(), "at-secret-access") || strings.Contains(e.logs.String(), "rt-secret-refresh") {
			t.Error("a token is in the log")
		}
	})
}
