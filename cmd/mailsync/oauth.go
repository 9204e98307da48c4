package main

import (
	"context"
	"fmt"
	"time"

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
