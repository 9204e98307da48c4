// Package oauthtest is a small OAuth2 authorization server for tests, written with the standard
// library: authorization code with PKCE and a consent page, token with refresh and rotation,
// device authorization (RFC 8628) with an approve endpoint tests call, introspection (RFC 7662,
// what Dovecot's oauth2 passdb asks) and revocation (RFC 7009), with a configurable access-token
// lifetime and counts of every request. It is a test kit: it never reaches the binary.
package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Provider is a running authorization server. Its methods are safe for concurrent use.
type Provider struct {
	ClientID, ClientSecret string
	srv                    *http.Server
	url                    string

	mu sync.Mutex
	// AccessTTL is the lifetime of the access tokens issued from now on.
	accessTTL time.Duration
	// refreshDelay holds every refresh this long before it answers: overlapping refreshes of
	// one token then show in MaxConcurrentRefreshes.
	refreshDelay time.Duration
	failRefresh  int // the next this many refreshes answer 503
	codes        map[string]*grant
	devices      map[string]*device // by device code
	access       map[string]*tokenInfo
	refresh      map[string]*tokenInfo
	issued       []string
	counts       map[string]int
	perUser      map[string]map[string]int
	inFlight     map[string]int // refreshes in flight, by user
	maxInFlight  int
	reused       int // refreshes with a rotated-away refresh token
}

type grant struct {
	user, redirect, challenge, method string
	expires                           time.Time
}

type device struct {
	userCode string
	user     string
	denied   bool
	expires  time.Time
	done     bool
}

type tokenInfo struct {
	user    string
	expires time.Time // zero: no expiry
	revoked bool
	rotated bool // a refresh token that was spent: using it again is a reuse
	family  string
}

// Start runs a provider on a free loopback port until the test ends.
func Start(tb testing.TB) *Provider {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	p := &Provider{
		ClientID: "mailsync-test-client", ClientSecret: "test-client-secret",
		url: "http://" + ln.Addr().String(), accessTTL: time.Hour,
		codes: map[string]*grant{}, devices: map[string]*device{}, access: map[string]*tokenInfo{},
		refresh: map[string]*tokenInfo{}, counts: map[string]int{}, perUser: map[string]map[string]int{},
		inFlight: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", p.metadata)
	mux.HandleFunc("GET /authorize", p.consentPage)
	mux.HandleFunc("POST /authorize", p.consent)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("POST /device", p.deviceAuth)
	mux.HandleFunc("POST /device/approve", p.deviceApprove)
	mux.HandleFunc("POST /introspect", p.introspect)
	mux.HandleFunc("POST /revoke", p.revoke)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	tb.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// URL is the issuer: the base of every endpoint.
func (p *Provider) URL() string { return p.url }

// IntrospectionURL is what Dovecot's oauth2 passdb asks.
func (p *Provider) IntrospectionURL() string { return p.url + "/introspect" }

// Endpoints.
func (p *Provider) AuthURL() string       { return p.url + "/authorize" }
func (p *Provider) TokenURL() string      { return p.url + "/token" }
func (p *Provider) DeviceAuthURL() string { return p.url + "/device" }
func (p *Provider) RevokeURL() string     { return p.url + "/revoke" }

// SetAccessTTL sets the lifetime of the access tokens issued from now on (default 1 h).
func (p *Provider) SetAccessTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accessTTL = d
}

// SetRefreshDelay makes every refresh wait d before it answers.
func (p *Provider) SetRefreshDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshDelay = d
}

// FailRefreshes makes the next n refreshes answer 503 (a provider having trouble).
func (p *Provider) FailRefreshes(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failRefresh = n
}

// Issue issues a token pair for user directly, as a finished sign-in would: access and refresh.
func (p *Provider) Issue(user string) (access, refresh string, expiry time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issueLocked(user, newID("fam"))
}

func (p *Provider) issueLocked(user, family string) (access, refresh string, expiry time.Time) {
	access, refresh = newID("at"), newID("rt")
	expiry = time.Now().Add(p.accessTTL)
	p.access[access] = &tokenInfo{user: user, expires: expiry, family: family}
	p.refresh[refresh] = &tokenInfo{user: user, family: family}
	p.issued = append(p.issued, access, refresh)
	return access, refresh, expiry
}

// Revoke revokes every token of user (consent withdrawn): refreshes answer invalid_grant and
// introspection says inactive.
func (p *Provider) Revoke(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range []map[string]*tokenInfo{p.access, p.refresh} {
		for _, ti := range m {
			if ti.user == user {
				ti.revoked = true
			}
		}
	}
}

// Issued returns every token issued so far, access and refresh: tests grep for them where no
// token may be.
func (p *Provider) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.issued)
}

// Count returns how many requests an endpoint got ("authorize", "token:refresh_token",
// "token:authorization_code", "token:device_code", "device", "introspect", "revoke"), of user
// when user is not empty (for the endpoints that know it).
func (p *Provider) Count(endpoint, user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if user == "" {
		return p.counts[endpoint]
	}
	return p.perUser[user][endpoint]
}

// MaxConcurrentRefreshes is the most refreshes of one user's tokens that were ever in flight at
// once; Reused counts refreshes that presented a refresh token already rotated away. Both stay
// 0 and 0 when refreshes are single-writer.
func (p *Provider) MaxConcurrentRefreshes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxInFlight
}

// Reused counts refreshes with a refresh token already spent.
func (p *Provider) Reused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reused
}

func (p *Provider) count(endpoint, user string) {
	p.counts[endpoint]++
	if user != "" {
		if p.perUser[user] == nil {
			p.perUser[user] = map[string]int{}
		}
		p.perUser[user][endpoint]++
	}
}

func (p *Provider) metadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": p.url, "authorization_endpoint": p.AuthURL(), "token_endpoint": p.TokenURL(),
		"device_authorization_endpoint": p.DeviceAuthURL(), "revocation_endpoint": p.RevokeURL(),
		"introspection_endpoint": p.IntrospectionURL(), "code_challenge_methods_supported": []string{"S256"},
	})
}

var consentTmpl = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><title>Test provider: consent</title></head><body>
<h1>Allow mailsync to read your mail?</h1>
<form method="post" action="/authorize">
{{range $k, $v := .Query}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">{{end}}
<label>Account <input id="username" name="username" value="{{.Hint}}"></label>
<button id="approve" name="decision" value="approve" type="submit">Allow</button>
<button id="deny" name="decision" value="deny" type="submit">Deny</button>
</form></body></html>`))

// consentPage is the provider's sign-in and consent page: the user names the account (prefilled
// from login_hint) and allows or denies.
func (p *Provider) consentPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	p.count("authorize", "")
	p.mu.Unlock()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = consentTmpl.Execute(w, map[string]any{"Query": q, "Hint": q.Get("login_hint")})
}

func (p *Provider) consent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostForm
	redirect, err := url.Parse(f.Get("redirect_uri"))
	if err != nil || f.Get("client_id") != p.ClientID {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	q := redirect.Query()
	q.Set("state", f.Get("state"))
	if f.Get("decision") != "approve" || f.Get("username") == "" {
		q.Set("error", "access_denied")
		q.Set("error_description", "The user denied the request")
	} else {
		code := newID("code")
		p.mu.Lock()
		p.codes[code] = &grant{user: f.Get("username"), redirect: f.Get("redirect_uri"),
			challenge: f.Get("code_challenge"), method: f.Get("code_challenge_method"), expires: time.Now().Add(time.Minute)}
		p.mu.Unlock()
		q.Set("code", code)
	}
	redirect.RawQuery = q.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (p *Provider) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == p.ClientID && secret == p.ClientSecret
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	if !p.clientOK(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		p.codeGrant(w, r)
	case "refresh_token":
		p.refreshGrant(w, r)
	case "urn:ietf:params:oauth:grant-type:device_code":
		p.deviceGrant(w, r)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

func (p *Provider) codeGrant(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.codes[f.Get("code")]
	delete(p.codes, f.Get("code")) // one use, whatever happens
	if g == nil {
		p.count("token:authorization_code", "")
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	p.count("token:authorization_code", g.user)
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if time.Now().After(g.expires) || g.redirect != f.Get("redirect_uri") || g.method != "S256" ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	access, refresh, expiry := p.issueLocked(g.user, newID("fam"))
	writeTokens(w, g.user, access, refresh, expiry)
}

func (p *Provider) refreshGrant(w http.ResponseWriter, r *http.Request) {
	old := r.PostForm.Get("refresh_token")
	p.mu.Lock()
	ti := p.refresh[old]
	user := ""
	if ti != nil {
		user = ti.user
	}
	p.count("token:refresh_token", user)
	if ti != nil && ti.rotated {
		p.reused++
	}
	if ti == nil || ti.revoked || ti.rotated {
		p.mu.Unlock()
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	if p.failRefresh > 0 {
		p.failRefresh--
		p.mu.Unlock()
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable")
		return
	}
	p.inFlight[user]++
	p.maxInFlight = max(p.maxInFlight, p.inFlight[user])
	delay := p.refreshDelay
	p.mu.Unlock()
	time.Sleep(delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight[user]--
	if ti.revoked || ti.rotated {
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	ti.rotated = true // rotation: the old refresh token is spent
	access, refresh, expiry := p.issueLocked(user, ti.family)
	writeTokens(w, user, access, refresh, expiry)
}

func (p *Provider) deviceAuth(w http.ResponseWriter, r *http.Request) {
	// A public client's request (RFC 8628 §3.1): the client id alone.
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != p.ClientID {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	dc := newID("dc")
	uc := strings.ToUpper(newID("")[1:9])
	p.mu.Lock()
	p.count("device", "")
	p.devices[dc] = &device{userCode: uc, expires: time.Now().Add(5 * time.Minute)}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": p.url + "/device/verify",
		"expires_in": 300, "interval": 1,
	})
}

// Approve approves the device authorization of userCode for user, as the user would at the
// verification page; deny refuses it instead.
func (p *Provider) Approve(userCode, user string, deny bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.devices {
		if d.userCode == userCode && !d.done {
			d.user, d.denied = user, deny
			return true
		}
	}
	return false
}

// deviceApprove is Approve over HTTP (user_code, username, deny): tests of another process call it.
func (p *Provider) deviceApprove(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !p.Approve(r.PostForm.Get("user_code"), r.PostForm.Get("username"), r.PostForm.Get("deny") != "") {
		http.Error(w, "no such pending user code", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *Provider) deviceGrant(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[r.PostForm.Get("device_code")]
	user := ""
	if d != nil {
		user = d.user
	}
	p.count("token:device_code", user)
	switch {
	case d == nil || d.done:
		oauthError(w, http.StatusBadRequest, "invalid_grant")
	case time.Now().After(d.expires):
		oauthError(w, http.StatusBadRequest, "expired_token")
	case d.denied:
		d.done = true
		oauthError(w, http.StatusBadRequest, "access_denied")
	case d.user == "":
		oauthError(w, http.StatusBadRequest, "authorization_pending")
	default:
		d.done = true
		access, refresh, expiry := p.issueLocked(d.user, newID("fam"))
		writeTokens(w, d.user, access, refresh, expiry)
	}
}

// introspect answers RFC 7662 with Dovecot's expectations: "active" as the string "true".
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ti := p.access[r.PostForm.Get("token")]
	if ti == nil {
		p.count("introspect", "")
		writeJSON(w, http.StatusOK, map[string]any{"active": "false"})
		return
	}
	p.count("introspect", ti.user)
	if ti.revoked || time.Now().After(ti.expires) {
		writeJSON(w, http.StatusOK, map[string]any{"active": "false"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": "true", "username": ti.user, "exp": ti.expires.Unix()})
}

// revoke is RFC 7009: revoking a refresh token revokes its family's access tokens too.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok := r.PostForm.Get("token")
	p.mu.Lock()
	defer p.mu.Unlock()
	ti := p.refresh[tok]
	if ti == nil {
		ti = p.access[tok]
	}
	user := ""
	if ti != nil {
		user = ti.user
		for _, m := range []map[string]*tokenInfo{p.access, p.refresh} {
			for _, o := range m {
				if o.family == ti.family {
					o.revoked = true
				}
			}
		}
	}
	p.count("revoke", user)
	w.WriteHeader(http.StatusOK)
}

// writeTokens answers a token request, with an (unsigned) OpenID Connect id_token naming the
// user's mailbox address as its email.
func writeTokens(w http.ResponseWriter, user, access, refresh string, expiry time.Time) {
	w.Header().Set("Cache-Control", "no-store")
	claims, _ := json.Marshal(map[string]string{"email": user, "sub": user})
	idToken := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".x"
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "refresh_token": refresh, "id_token": idToken,
		"expires_in": max(1, int(time.Until(expiry).Round(time.Second).Seconds())),
	})
}

func oauthError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	b := make([]byte, 24)
	rand.Read(b)
	return prefix + "-" + base64.RawURLEncoding.EncodeToString(b)
}

// String describes the provider for test logs.
func (p *Provider) String() string { return fmt.Sprintf("oauthtest provider at %s", p.url) }
