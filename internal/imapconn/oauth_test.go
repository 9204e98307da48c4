package imapconn_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/oauthtest"
)

// TestOAuth2Login logs in to a Dovecot whose oauth2 passdb introspects every token at the test
// provider, with each mechanism: a valid token opens the mailbox; a refused one is handed back to
// the token source once, and the fresh token it returns is tried on the same connection; a token
// source that has nothing better ends the login with an auth error that holds no token.
func TestOAuth2Login(t *testing.T) {
	prov := oauthtest.Start(t)
	dc := imaptest.StartDovecot(t, imaptest.WithOAuth2(prov.IntrospectionURL()))
	dc.AddUser(t, "alice", "unused-password")
	good, _, _ := prov.Issue("alice")
	stale, _, _ := prov.Issue("alice")
	prov.Revoke("nobody") // no effect on alice
	for _, mech := range []string{imapconn.MechXOAuth2, imapconn.MechOAuthBearer, ""} {
		t.Run("mech="+mech, func(t *testing.T) {
			cfg := config(dc, imaptest.User{Login: "alice"})
			cfg.OAuthMechanism = mech
			cfg.OAuthToken = func(context.Context, string) (string, error) { return good, nil }
			c := dial(t, cfg)
			if _, err := c.ListFolders(context.Background()); err != nil {
				t.Fatalf("ListFolders after an OAuth2 login: %v", err)
			}
			c.Close()

			// A token the server refuses, then a good one: one login, two tries.
			var calls atomic.Int32
			cfg.OAuthToken = func(_ context.Context, refused string) (string, error) {
				calls.Add(1)
				if refused == "" {
					return "at-never-issued", nil
				}
				return good, nil
			}
			dial(t, cfg).Close()
			if n := calls.Load(); n != 2 {
				t.Errorf("token source asked %d times, want 2 (the refused token handed back once)", n)
			}

			// Nothing better: the server's refusal, classed auth, without the token.
			cfg.OAuthToken = func(_ context.Context, refused string) (string, error) {
				if refused != "" {
					return refused, nil
				}
				return stale + "x", nil
			}
			_, err := imapconn.Dial(context.Background(), cfg)
			if !errors.Is(err, imapconn.ErrAuth) {
				t.Fatalf("Dial with a bad token = %v, want an auth error", err)
			}
			if strings.Contains(err.Error(), stale) {
				t.Errorf("the error holds the token: %v", err)
			}

			// The token source's own error comes out unchanged.
			sentinel := errors.New("sign in again")
			cfg.OAuthToken = func(context.Context, string) (string, error) { return "", sentinel }
			if _, err := imapconn.Dial(context.Background(), cfg); !errors.Is(err, sentinel) {
				t.Errorf("Dial with a failing token source = %v, want its error", err)
			}
		})
	}
	if n := prov.Count("introspect", "alice"); n == 0 {
		t.Errorf("Dovecot never introspected alice's tokens")
	}
}
