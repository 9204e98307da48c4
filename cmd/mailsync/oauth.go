package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"mailsync/internal/metrics"
	"mailsync/internal/oauth"
	"mailsync/internal/secret"
	"mailsync/internal/store"
)

// OAuthFlags are the operator's OAuth2 client registrations. A provider without a client id is
// not offered; secrets belong in the environment, not on the command line.
type OAuthFlags struct {
	GoogleClientID        string        `name:"oauth-google-client-id" env:"MAILSYNC_OAUTH_GOOGLE_CLIENT_ID" help:"Client id of the Google Cloud OAuth client (Gmail accounts)."`
	GoogleClientSecret    string        `name:"oauth-google-client-secret" env:"MAILSYNC_OAUTH_GOOGLE_CLIENT_SECRET" help:"Its client secret (set it in the environment)."`
	MicrosoftClientID     string        `name:"oauth-microsoft-client-id" env:"MAILSYNC_OAUTH_MICROSOFT_CLIENT_ID" help:"Application (client) id of the Microsoft Entra app registration (Microsoft 365, Outlook.com)."`
	MicrosoftClientSecret string        `name:"oauth-microsoft-client-secret" env:"MAILSYNC_OAUTH_MICROSOFT_CLIENT_SECRET" help:"Its client secret (empty for a public client; set it in the environment)."`
	MicrosoftTenant       string        `name:"oauth-microsoft-tenant" env:"MAILSYNC_OAUTH_MICROSOFT_TENANT" default:"common" help:"common, organizations, consumers, or a tenant id or domain."`
	ProvidersFile         string        `name:"oauth-providers" env:"MAILSYNC_OAUTH_PROVIDERS" type:"path" help:"A JSON file of further OAuth2 providers (docs/oauth.md)."`
	RedirectURL           string        `name:"oauth-redirect-url" env:"MAILSYNC_OAUTH_REDIRECT_URL" placeholder:"https://HOST/oauth/callback" help:"The redirect URI registered with the providers (default: this server's /oauth/callback as the browser reaches it)."`
	RefreshMargin         time.Duration `name:"oauth-refresh-margin" env:"MAILSYNC_OAUTH_REFRESH_MARGIN" default:"2m" help:"Refresh an access token this long before it expires (at most a quarter of its lifetime)."`
}

// setupOAuth loads the configured providers and makes the token keeper every sync, IDLE and
// sign-in of the process shares; reg, when set, counts refreshes and reauth_required accounts.
func (g *Globals) setupOAuth(ctx context.Context, s *store.Store, box *secret.Box, reg *metrics.Registry) error {
	f := g.OAuth
	providers, err := oauth.Load(ctx, oauth.Config{
		GoogleClientID: f.GoogleClientID, GoogleClientSecret: f.GoogleClientSecret,
		MicrosoftClientID: f.MicrosoftClientID, MicrosoftClientSecret: f.MicrosoftClientSecret,
		MicrosoftTenant: f.MicrosoftTenant, File: f.ProvidersFile,
	}, nil)
	if err != nil {
		return fmt.Errorf("oauth providers: %w", err)
	}
	opts := oauth.Options{Margin: f.RefreshMargin, Logger: g.logger}
	if reg != nil {
		opts.Refreshed, opts.ReauthRequired = reg.OAuthRefresh, reg.ReauthRequired
	}
	g.tokens = oauth.NewTokens(s, box, providers, opts)
	return nil
}

// OAuthAddFlags are account add's OAuth2 sign-in.
type OAuthAddFlags struct {
	Provider string        `name:"oauth" placeholder:"google|microsoft|NAME" help:"Sign in with this configured OAuth2 provider instead of a password: the device code where the provider allows it (Microsoft), else a browser redirect to a one-shot listener on 127.0.0.1."`
	Login    string        `name:"login" placeholder:"ADDRESS" help:"With --oauth: the mailbox address (default: the one the provider names)."`
	Timeout  time.Duration `name:"oauth-timeout" default:"10m" help:"With --oauth: how long to wait for the sign-in."`
	Loopback bool          `name:"oauth-loopback" help:"With --oauth: use the browser redirect even where the device code is allowed."`
	Port     int           `name:"oauth-loopback-port" default:"0" help:"With the browser redirect: the listener's port on 127.0.0.1 (0: any free one; set one for a client that registers exact redirect URIs, or to forward it with ssh -L)."`
}

// addOAuth is account add --oauth: sign in, test the IMAP login with the token, then save.
func (c *AccountAddCmd) addOAuth(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := findUser(ctx, s, c.User)
	if err != nil {
		return err
	}
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	a, ts, err := g.signIn(ctx, s, box, c.OAuthFlags, "")
	if err != nil {
		return err
	}
	a.UserID, a.Name, a.SyncInterval = u.ID, c.Name, c.SyncInterval
	a.SecretEnc = ts.Seal(box, a.Login, a.IMAPHost)
	saved, err := s.CreateAccount(ctx, a)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("nothing saved: %s already has an account named %q", c.User, c.Name)
	}
	if err != nil {
		return fmt.Errorf("nothing saved: %w", err)
	}
	fmt.Fprintf(g.stdout, "account %d %q added: %s at %s (OAuth2, %s)\n", saved.ID, saved.Name, saved.Login, saved.IMAPHost, saved.OAuthProvider)
	return nil
}

// AccountReauthCmd signs an OAuth2 account in again, headless: "Sign in again" of the web UI.
type AccountReauthCmd struct {
	Account  string        `arg:"" help:"Account id or name."`
	Timeout  time.Duration `name:"oauth-timeout" default:"10m" help:"How long to wait for the sign-in."`
	Loopback bool          `name:"oauth-loopback" help:"Use the browser redirect even where the device code is allowed."`
	Port     int           `name:"oauth-loopback-port" default:"0" help:"The browser redirect's listener port on 127.0.0.1 (0: any free one)."`
}

func (c *AccountReauthCmd) Run(ctx context.Context, g *Globals) error {
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := findAccount(ctx, s, c.Account)
	if err != nil {
		return err
	}
	if !a.IsOAuth2() {
		return fmt.Errorf("account %q signs in with a password: change it with account edit --password-stdin", a.Name)
	}
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	flags := OAuthAddFlags{Provider: a.OAuthProvider, Login: a.Login, Timeout: c.Timeout, Loopback: c.Loopback, Port: c.Port}
	signed, ts, err := g.signIn(ctx, s, box, flags, a.Login)
	if err != nil {
		return err
	}
	if _, err := s.ReplaceOAuthToken(ctx, a.ID, a.OAuthProvider, signed.Login, ts.Seal(box, signed.Login, a.IMAPHost), ts.Expiry); err != nil {
		return fmt.Errorf("nothing saved: %w", err)
	}
	if _, _, err := tasks.Start(ctx, a.ID, false); err != nil {
		return fmt.Errorf("signed in again, but the sync could not start: %w", err)
	}
	fmt.Fprintf(g.stdout, "account %d %q signed in again; its sync is queued\n", a.ID, a.Name)
	return nil
}

// signIn runs the provider's headless sign-in (the device code where allowed, else the loopback
// redirect), learns the mailbox address, and tests the IMAP login with the new token. must, when
// set, is the address the sign-in has to be for. Nothing is stored.
func (g *Globals) signIn(ctx context.Context, s *store.Store, box *secret.Box, f OAuthAddFlags, must string) (store.Account, oauth.TokenSet, error) {
	if err := g.setupOAuth(ctx, s, box, nil); err != nil {
		return store.Account{}, oauth.TokenSet{}, err
	}
	p := g.tokens.Providers().Get(f.Provider)
	if p == nil {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("no OAuth2 provider %q is configured: give its client id (--oauth-%s-client-id or MAILSYNC_OAUTH_%s_CLIENT_ID) or list it in --oauth-providers",
			f.Provider, f.Provider, strings.ToUpper(f.Provider))
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	var (
		ts  oauth.TokenSet
		tok *oauth2.Token
		err error
	)
	client := g.tokens.HTTPClient()
	if p.DeviceGrant && p.DeviceAuthURL != "" && !f.Loopback {
		ts, tok, err = p.DeviceFlow(ctx, client, func(uri, code string) {
			fmt.Fprintf(g.stdout, "To sign in to %s, open %s and enter the code %s\nwaiting up to %s…\n", p.Label, uri, code, f.Timeout)
		})
	} else {
		ts, tok, err = p.LoopbackFlow(ctx, client, f.Port, f.Login, func(url string) {
			fmt.Fprintf(g.stdout, "To sign in to %s, open this address in a browser on this machine:\n%s\nwaiting up to %s…\n", p.Label, url, f.Timeout)
		})
	}
	if err != nil {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("nothing saved: %w", err)
	}
	if ts.Refresh == "" {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("nothing saved: %s gave no refresh token, so mailsync could not stay signed in", p.Label)
	}
	login := f.Login
	if login == "" {
		login = oauth.Address(tok)
	}
	if login == "" {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("nothing saved: %s did not say which mailbox was signed in to: give it with --login", p.Label)
	}
	if must != "" && !strings.EqualFold(login, must) {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("nothing saved: signed in as %s, but the account is %s", login, must)
	}
	a := store.Account{IMAPHost: p.IMAPHost, IMAPPort: p.IMAPPort, TLSMode: p.IMAPTLS, Login: login,
		AuthKind: store.AuthOAuth2, OAuthProvider: p.Name, TokenExpiry: ts.Expiry}
	if err := g.syncEngine(s, box, nil).CheckOAuthLogin(ctx, a, ts.Access); err != nil {
		return store.Account{}, oauth.TokenSet{}, fmt.Errorf("nothing saved: signed in, but %w", err)
	}
	return a, ts, nil
}
