package oauth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/oauth"
	"mailsync/internal/oauthtest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
)

func testBox(t *testing.T) *secret.Box {
	t.Helper()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// testProviders is the test provider as mailsync's configuration names it, found by discovery.
func testProviders(t *testing.T, prov *oauthtest.Provider) *oauth.Providers {
	t.Helper()
	ps, err := oauth.New(context.Background(), nil, oauth.Provider{
		Name: "test", ClientID: prov.ClientID, ClientSecret: prov.ClientSecret, Issuer: prov.URL(),
		IMAPHost: "127.0.0.1", IMAPPort: 143, IMAPTLS: "none",
	})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// seed stores an OAuth2 account for user with a token set the provider issued, expired already
// when expired is set.
func seed(t *testing.T, s *store.Store, box *secret.Box, prov *oauthtest.Provider, user string, expired bool) store.Account {
	t.Helper()
	access, refresh, expiry := prov.Issue(user)
	issued := time.Now()
	if expired {
		expiry = issued.Add(-time.Second)
		issued = expiry.Add(-time.Hour)
	}
	ts := oauth.TokenSet{Access: access, Refresh: refresh, Issued: issued, Expiry: expiry}
	return storetest.SeedOAuthAccount(t, s, user, "127.0.0.1", 143, ts.Seal(box, user, "127.0.0.1"), expiry)
}

type counts struct {
	mu      sync.Mutex
	results map[string]int
	reauth  atomic.Int32
}

func (c *counts) options() oauth.Options {
	c.results = map[string]int{}
	return oauth.Options{
		Backoff: 10 * time.Millisecond, Poll: 10 * time.Millisecond,
		Refreshed: func(r string) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.results[r]++
		},
		ReauthRequired: func() { c.reauth.Add(1) },
	}
}

func (c *counts) get(r string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.results[r]
}

// TestDiscovery: a generic provider given by its issuer gets its endpoints from the metadata.
func TestDiscovery(t *testing.T) {
	prov := oauthtest.Start(t)
	p := testProviders(t, prov).Get("test")
	if p == nil || p.TokenURL != prov.TokenURL() || p.AuthURL != prov.AuthURL() || p.DeviceAuthURL != prov.DeviceAuthURL() {
		t.Fatalf("discovered provider = %+v", p)
	}
	if _, err := oauth.New(context.Background(), nil, oauth.Provider{Name: "x", ClientID: "id", Issuer: prov.URL() + "/nowhere", IMAPHost: "h"}); err == nil {
		t.Error("a provider whose discovery fails was accepted")
	}
	ps, err := oauth.Load(context.Background(), oauth.Config{MicrosoftClientID: "ms-id", MicrosoftTenant: "contoso.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names := ps.List(); len(names) != 1 || names[0].Name != "microsoft" || ps.Get("google") != nil {
		t.Fatalf("providers without credentials offered, or the preset missing: %+v", names)
	}
	if ms := ps.Get("microsoft"); ms.TokenURL != "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token" || !ms.DeviceGrant {
		t.Errorf("Microsoft preset for a tenant = %+v", ms)
	}
}

// TestConcurrentRefreshesSpendTheTokenOnce: ten callers on one instance and ten on a second
// instance (another Store on the same database) all want a new token for one account at once;
// the provider, which delays each refresh so that overlapping ones would show, sees one refresh,
// never two in flight, and no rotated refresh token spent again; everyone gets the new token.
func TestConcurrentRefreshesSpendTheTokenOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		prov := oauthtest.Start(t)
		prov.SetRefreshDelay(200 * time.Millisecond)
		box := testBox(t)
		dsn := storetest.DSN(t, dialect)
		s1 := storetest.OpenDSN(t, dsn, true)
		s2 := storetest.OpenDSN(t, dsn, false)
		ps := testProviders(t, prov)
		var c counts
		opts := c.options()
		instances := []*oauth.Tokens{oauth.NewTokens(s1, box, ps, opts), oauth.NewTokens(s2, box, ps, opts)}
		a := seed(t, s1, box, prov, "alice", true)

		var wg sync.WaitGroup
		got := make([]string, 20)
		errs := make([]error, 20)
		for i := range got {
			wg.Go(func() {
				acc, err := instances[i%2].Token(context.Background(), a.ID, "")
				got[i], errs[i] = acc.Token, err
			})
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			if got[i] != got[0] {
				t.Fatalf("callers got different tokens: %q and %q", got[0], got[i])
			}
		}
		if n := prov.Count("token:refresh_token", "alice"); n != 1 {
			t.Errorf("the provider saw %d refreshes, want 1", n)
		}
		if m, r := prov.MaxConcurrentRefreshes(), prov.Reused(); m != 1 || r != 0 {
			t.Errorf("refreshes in flight at once %d (want 1), rotated tokens spent again %d (want 0)", m, r)
		}
		if c.get("ok") != 1 {
			t.Errorf("refreshes counted ok: %d, want 1", c.get("ok"))
		}
		after, err := s1.Account(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.TokenVersion != 1 {
			t.Errorf("token version %d, want 1", after.TokenVersion)
		}
	})
}

// TestRefusedTokenRefreshedOnce: a token a server refused is refreshed even before its expiry,
// and a caller that hands back a token already replaced gets the replacement without a refresh.
func TestRefusedTokenRefreshedOnce(t *testing.T) {
	prov := oauthtest.Start(t)
	box := testBox(t)
	s := storetest.Open(t, "sqlite")
	var c counts
	tok := oauth.NewTokens(s, box, testProviders(t, prov), c.options())
	a := seed(t, s, box, prov, "bob", false)
	ctx := context.Background()
	first, err := tok.Token(ctx, a.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if prov.Count("token:refresh_token", "") != 0 {
		t.Fatal("a fresh token was refreshed")
	}
	second, err := tok.Token(ctx, a.ID, first.Token)
	if err != nil {
		t.Fatal(err)
	}
	if second.Token == first.Token || prov.Count("token:refresh_token", "bob") != 1 {
		t.Fatalf("a refused token was not refreshed (refreshes: %d)", prov.Count("token:refresh_token", "bob"))
	}
	third, err := tok.Token(ctx, a.ID, first.Token)
	if err != nil {
		t.Fatal(err)
	}
	if third.Token != second.Token || prov.Count("token:refresh_token", "bob") != 1 {
		t.Fatal("handing back a token already replaced refreshed again")
	}
}

// TestRevokedAuthorization: invalid_grant puts the account in reauth_required, counted once;
// from then on nothing asks the provider.
func TestRevokedAuthorization(t *testing.T) {
	prov := oauthtest.Start(t)
	box := testBox(t)
	s := storetest.Open(t, "sqlite")
	var c counts
	tok := oauth.NewTokens(s, box, testProviders(t, prov), c.options())
	a := seed(t, s, box, prov, "carol", true)
	prov.Revoke("carol")
	ctx := context.Background()
	for range 3 {
		_, err := tok.Token(ctx, a.ID, "")
		if !errors.Is(err, oauth.ErrReauthRequired) {
			t.Fatalf("Token after revocation = %v, want ErrReauthRequired", err)
		}
	}
	if n := prov.Count("token:refresh_token", "carol"); n != 1 {
		t.Errorf("the provider was asked %d times, want 1", n)
	}
	got, err := s.Account(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ReauthRequired() || got.LastError == "" {
		t.Errorf("account after invalid_grant: state %q, last error %q", got.AuthState, got.LastError)
	}
	if c.reauth.Load() != 1 || c.get("auth") != 1 {
		t.Errorf("reauth counted %d times, auth refreshes %d; want 1 and 1", c.reauth.Load(), c.get("auth"))
	}
	if err := tok.Keep(ctx, a.ID); !errors.Is(err, oauth.ErrReauthRequired) {
		t.Errorf("Keep on a reauth_required account = %v", err)
	}
}

// TestTransientRefreshFailures: a provider answering 503 is retried with backoff; one that keeps
// failing gives a transient error and releases the lease, so the next caller may try at once.
func TestTransientRefreshFailures(t *testing.T) {
	prov := oauthtest.Start(t)
	box := testBox(t)
	s := storetest.Open(t, "sqlite")
	var c counts
	tok := oauth.NewTokens(s, box, testProviders(t, prov), c.options())
	a := seed(t, s, box, prov, "dave", true)
	ctx := context.Background()
	prov.FailRefreshes(2)
	if _, err := tok.Token(ctx, a.ID, ""); err != nil {
		t.Fatalf("Token after two 503s = %v, want success on the third try", err)
	}
	if c.get("transient") != 2 || c.get("ok") != 1 {
		t.Errorf("counted %v", c.results)
	}
	acc, err := tok.Token(ctx, a.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	prov.FailRefreshes(3)
	_, err = tok.Token(ctx, a.ID, acc.Token)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Class != "transient" {
		t.Fatalf("Token while the provider fails = %v, want a transient *oauth.Error", err)
	}
	if _, err := tok.Token(ctx, a.ID, acc.Token); err != nil {
		t.Fatalf("Token once the provider is back = %v (was the lease left held?)", err)
	}

	// Due for refresh but not expired: while the provider fails, the current token is used.
	access, refresh, _ := prov.Issue("dave")
	now := time.Now()
	ts := oauth.TokenSet{Access: access, Refresh: refresh, Issued: now.Add(-time.Hour), Expiry: now.Add(30 * time.Second)}
	due := storetest.SeedOAuthAccount(t, s, "dave", "127.0.0.1", 143, ts.Seal(box, "dave", "127.0.0.1"), ts.Expiry)
	prov.FailRefreshes(3)
	got, err := tok.Token(ctx, due.ID, "")
	if err != nil || got.Token != access {
		t.Fatalf("Token of a due token while the provider fails = %v, %v; want the current token", got.Token == access, err)
	}
}
