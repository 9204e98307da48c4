// Package oauth signs mailsync in to mailboxes with OAuth2 (Gmail, Microsoft 365, any provider
// whose IMAP server takes XOAUTH2 or OAUTHBEARER): the providers as configuration, the flows that
// get a first token (authorization code with PKCE, device authorization, the loopback redirect of
// native apps), the sealed token set stored with the account, and Tokens, the one place where an
// access token is refreshed.
package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Provider is one OAuth2 authorization server and the IMAP server its tokens open. The presets
// (Google, Microsoft) only lack the operator's client id and secret; a generic provider names
// its endpoints, or an issuer whose metadata gives them (Discover).
type Provider struct {
	// Name is how accounts, flags and the CLI name the provider ("google", "microsoft", or the
	// operator's own); Label is what the web UI shows ("Google").
	Name  string `json:"name"`
	Label string `json:"label,omitempty"`

	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`

	// Issuer, when set and an endpoint is missing, is asked for its metadata (RFC 8414, then
	// OpenID Connect discovery).
	Issuer        string   `json:"issuer,omitempty"`
	AuthURL       string   `json:"auth_url,omitempty"`
	TokenURL      string   `json:"token_url,omitempty"`
	DeviceAuthURL string   `json:"device_auth_url,omitempty"`
	RevokeURL     string   `json:"revocation_url,omitempty"`
	Scopes        []string `json:"scopes,omitempty"`
	// AuthParams are extra parameters of the authorization request (Google needs
	// access_type=offline and prompt=consent to hand out a refresh token).
	AuthParams map[string]string `json:"auth_params,omitempty"`

	// ClientAuth is how the client authenticates at the token endpoint: "basic" (HTTP Basic,
	// RFC 6749's default, used when empty) or "post" (client_id and client_secret in the form,
	// as the Google and Microsoft presets do). Never guessed: golang.org/x/oauth2's guessing sends
	// every failing request twice, which a refresh-token rotation cannot afford.
	ClientAuth string `json:"client_auth,omitempty"`

	// DeviceGrant says the provider allows the device authorization grant (RFC 8628) for these
	// scopes: the CLI then uses it, else the loopback redirect (RFC 8252). Google does not allow
	// it for mail; Microsoft does.
	DeviceGrant bool `json:"device_grant,omitempty"`

	IMAPHost string `json:"imap_host"`
	IMAPPort int    `json:"imap_port,omitempty"`
	// IMAPTLS is tls (the default), starttls or none.
	IMAPTLS string `json:"imap_tls,omitempty"`
}

// Google is the preset for Gmail and Google Workspace.
func Google() Provider {
	return Provider{
		Name: "google", Label: "Google", ClientAuth: "post",
		AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", TokenURL: "https://oauth2.googleapis.com/token",
		RevokeURL: "https://oauth2.googleapis.com/revoke",
		// openid email: the id_token names the mailbox signed in to.
		Scopes:     []string{"https://mail.google.com/", "openid", "email"},
		AuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		IMAPHost:   "imap.gmail.com", IMAPPort: 993, IMAPTLS: "tls",
	}
}

// Microsoft is the preset for Microsoft 365 and Outlook.com; tenant is "common" (any work,
// school or personal account) when empty, else a tenant id or domain ("organizations",
// "contoso.onmicrosoft.com").
func Microsoft(tenant string) Provider {
	if tenant == "" {
		tenant = "common"
	}
	base := "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/"
	return Provider{
		Name: "microsoft", Label: "Microsoft", ClientAuth: "post",
		AuthURL: base + "authorize", TokenURL: base + "token", DeviceAuthURL: base + "devicecode",
		Scopes:      []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access", "openid", "email"},
		DeviceGrant: true,
		IMAPHost:    "outlook.office365.com", IMAPPort: 993, IMAPTLS: "tls",
	}
}

// Config is the operator's OAuth2 settings: the presets' credentials and a provider file.
type Config struct {
	GoogleClientID, GoogleClientSecret       string
	MicrosoftClientID, MicrosoftClientSecret string
	MicrosoftTenant                          string
	// File is a JSON array of Provider (generic providers, or presets overridden by name).
	File string
}

// Providers is the set of providers the operator configured credentials for: only those are
// offered to users.
type Providers struct{ list []Provider }

// Load returns the providers cfg configures: a preset whose client id is set, and every provider
// of cfg.File. Endpoints a provider lacks are discovered from its issuer through client.
func Load(ctx context.Context, cfg Config, client *http.Client) (*Providers, error) {
	var list []Provider
	if cfg.GoogleClientID != "" {
		g := Google()
		g.ClientID, g.ClientSecret = cfg.GoogleClientID, cfg.GoogleClientSecret
		list = append(list, g)
	}
	if cfg.MicrosoftClientID != "" {
		m := Microsoft(cfg.MicrosoftTenant)
		m.ClientID, m.ClientSecret = cfg.MicrosoftClientID, cfg.MicrosoftClientSecret
		list = append(list, m)
	}
	if cfg.File != "" {
		data, err := os.ReadFile(cfg.File)
		if err != nil {
			return nil, fmt.Errorf("oauth: provider file: %w", err)
		}
		var fromFile []Provider
		if err := json.Unmarshal(data, &fromFile); err != nil {
			return nil, fmt.Errorf("oauth: provider file %s: %w", cfg.File, err)
		}
		for _, p := range fromFile {
			list = slices.DeleteFunc(list, func(q Provider) bool { return q.Name == p.Name })
			list = append(list, p)
		}
	}
	return New(ctx, client, list...)
}

// New checks providers, discovers what they lack from their issuers, and returns them as a set.
// A provider without a client id is left out: it cannot be offered.
func New(ctx context.Context, client *http.Client, providers ...Provider) (*Providers, error) {
	out := &Providers{}
	for _, p := range providers {
		if p.ClientID == "" {
			continue
		}
		if p.Name == "" || strings.ContainsAny(p.Name, " /?#") {
			return nil, fmt.Errorf("oauth: provider name %q: want a short word", p.Name)
		}
		if p.Label == "" {
			p.Label = p.Name
		}
		if p.IMAPPort == 0 {
			p.IMAPPort = 993
		}
		if p.IMAPTLS == "" {
			p.IMAPTLS = "tls"
		}
		if p.ClientAuth == "" {
			p.ClientAuth = "basic"
		}
		if p.ClientAuth != "basic" && p.ClientAuth != "post" {
			return nil, fmt.Errorf("oauth: provider %q: client_auth %q: want basic or post", p.Name, p.ClientAuth)
		}
		if (p.AuthURL == "" || p.TokenURL == "") && p.Issuer != "" {
			if err := p.discover(ctx, client); err != nil {
				return nil, err
			}
		}
		if p.TokenURL == "" || p.AuthURL == "" {
			return nil, fmt.Errorf("oauth: provider %q: no auth_url and token_url (nor an issuer that gives them)", p.Name)
		}
		if p.IMAPHost == "" {
			return nil, fmt.Errorf("oauth: provider %q: no imap_host", p.Name)
		}
		if out.Get(p.Name) != nil {
			return nil, fmt.Errorf("oauth: provider %q configured twice", p.Name)
		}
		out.list = append(out.list, p)
	}
	return out, nil
}

// List returns the configured providers, in configuration order.
func (ps *Providers) List() []Provider {
	if ps == nil {
		return nil
	}
	return slices.Clone(ps.list)
}

// Get returns the provider called name, or nil.
func (ps *Providers) Get(name string) *Provider {
	if ps == nil {
		return nil
	}
	for i := range ps.list {
		if ps.list[i].Name == name {
			p := ps.list[i]
			return &p
		}
	}
	return nil
}

// metadata is what the issuer's metadata document says of the endpoints.
type metadata struct {
	Issuer        string `json:"issuer"`
	AuthURL       string `json:"authorization_endpoint"`
	TokenURL      string `json:"token_endpoint"`
	DeviceAuthURL string `json:"device_authorization_endpoint"`
	RevokeURL     string `json:"revocation_endpoint"`
}

// discover fills the endpoints p lacks from its issuer's metadata: RFC 8414's
// /.well-known/oauth-authorization-server, else OpenID Connect's openid-configuration.
func (p *Provider) discover(ctx context.Context, client *http.Client) error {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	base := strings.TrimSuffix(p.Issuer, "/")
	var errs []error
	for _, doc := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		md, err := fetchMetadata(ctx, client, base+doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimSuffix(md.Issuer, "/") != base {
			errs = append(errs, fmt.Errorf("%s names issuer %q", doc, md.Issuer))
			continue
		}
		p.AuthURL = cmp(p.AuthURL, md.AuthURL)
		p.TokenURL = cmp(p.TokenURL, md.TokenURL)
		p.DeviceAuthURL = cmp(p.DeviceAuthURL, md.DeviceAuthURL)
		p.RevokeURL = cmp(p.RevokeURL, md.RevokeURL)
		return nil
	}
	return fmt.Errorf("oauth: provider %q: discovery at %s: %w", p.Name, p.Issuer, errors.Join(errs...))
}

func cmp(have, found string) string {
	if have != "" {
		return have
	}
	return found
}

func fetchMetadata(ctx context.Context, client *http.Client, url string) (metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return metadata{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return metadata{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metadata{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var md metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&md); err != nil {
		return metadata{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return md, nil
}

// OAuth2 is the provider as golang.org/x/oauth2 takes it, with redirectURL for the
// authorization-code flows.
func (p *Provider) OAuth2(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, Scopes: p.Scopes, RedirectURL: redirectURL,
		Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, DeviceAuthURL: p.DeviceAuthURL, AuthStyle: p.authStyle()},
	}
}

func (p *Provider) authStyle() oauth2.AuthStyle {
	if p.ClientAuth == "post" {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// AuthCodeURL is the address of the provider's consent page for state, with the PKCE challenge
// of verifier (RFC 7636, S256) and login_hint when the mailbox address is known.
func (p *Provider) AuthCodeURL(redirectURL, state, verifier, loginHint string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k, v := range p.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	return p.OAuth2(redirectURL).AuthCodeURL(state, opts...)
}
