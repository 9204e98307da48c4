// Package httpapi is mailsync's HTTP interface: the JSON API (huma v2 on a net/http ServeMux,
// which also serves its OpenAPI 3.1 description), the SSE progress streams, the operators'
// health and metrics endpoints, and the authentication in front of them.
//
// Every error is an RFC 9457 problem document. Another user's account, task or message answers
// 404, exactly as one that does not exist, so ids reveal nothing.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"mailsync/internal/auth"
	"mailsync/internal/metrics"
	"mailsync/internal/oauth"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/webhook"
)

// LoginChecker tests IMAP credentials before an account is stored or changed. The server wires
// the real one (package imapconn); tests use a fake.
type LoginChecker interface {
	CheckLogin(ctx context.Context, a store.Account, password string) error
}

// SMTPChecker tests an account's SMTP settings with the account's credentials: a test login.
type SMTPChecker interface {
	CheckSMTP(ctx context.Context, a store.Account, c store.SMTP) error
}

// Subscriber delivers change signals (package events) on a topic: a task's id, or an account's
// events.ChangesTopic.
type Subscriber interface {
	Subscribe(topic string) (<-chan struct{}, func())
}

// Config is what the API is built from.
type Config struct {
	Store  *store.Store
	Tasks  *task.Manager
	Events Subscriber
	Box    *secret.Box
	Login  LoginChecker
	// SMTPCheck tests an account's SMTP settings before they are stored; nil: not tested.
	SMTPCheck SMTPChecker
	Sessions  *auth.Sessions
	Metrics   *metrics.Registry
	Log       *slog.Logger
	Version   string
	// OAuth is the token keeper with the configured OAuth2 providers; nil: no provider, and no
	// OAuth2 sign-in is offered.
	OAuth *oauth.Tokens
	// OAuthRedirectURL is the redirect URI registered with the providers; empty: this server's
	// /oauth/callback as each request reached it.
	OAuthRedirectURL string
	// DataDir is the directory whose disk /api/health/system reports ("" for none).
	DataDir string
	// SecureCookies marks the session cookie Secure (serve over HTTPS, or behind a TLS proxy).
	SecureCookies bool
	// LoginGuard limits login attempts per client address and per address and email, and slows
	// down an email under attack; nil: auth.DefaultLoginPolicy.
	LoginGuard *auth.LoginGuard
	// PasswordParams are the argon2id costs of new password hashes; zero: auth.DefaultParams.
	PasswordParams auth.Params
	// LoginConcurrency is how many password checks run at once (each takes PasswordParams.Memory);
	// zero: sized from the memory available (auth.AvailableMemory, auth.GateSize). A login that
	// finds none free within LoginWait (zero: 2 s) answers 503 with Retry-After.
	LoginConcurrency int
	LoginWait        time.Duration

	// TokenCacheTTL is how long a token's user is remembered between lookups: a deleted token
	// keeps working that long. Zero: 2 s; negative: no cache.
	TokenCacheTTL time.Duration

	// MetricsToken, when set, is the bearer token GET /metrics requires; empty: /metrics is open
	// to anyone who can reach it.
	MetricsToken string
	// MetricsElsewhere leaves /metrics out of Handler: MetricsHandler serves it on an address of
	// its own.
	MetricsElsewhere bool

	// MaxStreamsPerUser and MaxStreamsPerTask cap the event streams open at once on this
	// instance; beyond them a stream answers 429. Zero: 20 and 8; negative: no cap.
	MaxStreamsPerUser int
	MaxStreamsPerTask int

	// Webhooks sends test events and checks endpoint URLs; nil: a deliverer of its own, with the
	// default client (private addresses refused), that never runs.
	Webhooks *webhook.Deliverer
	// WebhookLagWarn is the delivery lag past which /api/health/sync warns; zero: 5 minutes.
	WebhookLagWarn time.Duration

	// SSE timing; zero values take the defaults (15 s, 1 s, 250 ms).
	KeepAlive        time.Duration // comment lines that keep proxies from closing idle streams
	PollInterval     time.Duration // re-read of a streamed task when no signal came
	MinEventInterval time.Duration // at most one progress event per interval ("a few per second")

	// The change stream's bounds (GET /api/changes/stream). A write the client does not take
	// within StreamWriteTimeout ends the stream (zero: 10 s). A stream that, after it caught up,
	// falls more than StreamMaxLag changes behind an account's log and keeps falling behind ends
	// with an "overflow" event (zero: 10,000).
	StreamWriteTimeout time.Duration
	StreamMaxLag       int64
}

// Server is the HTTP API. Handler returns what to serve; Shutdown ends streams and readiness.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	tasks   *task.Manager
	api     huma.API
	mux     *http.ServeMux
	handler http.Handler
	guard   *auth.LoginGuard
	gate    *auth.Gate
	tokens  *tokenCache
	streams *streamCaps
	started time.Time

	closeOnce sync.Once
	closing   chan struct{}

	dummyOnce sync.Once
	dummy     string
}

// New builds the API from cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil || cfg.Tasks == nil || cfg.Events == nil || cfg.Box == nil || cfg.Login == nil ||
		cfg.Sessions == nil || cfg.Metrics == nil:
		return nil, fmt.Errorf("httpapi: Store, Tasks, Events, Box, Login, Sessions and Metrics are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MinEventInterval <= 0 {
		cfg.MinEventInterval = 250 * time.Millisecond
	}
	if cfg.StreamWriteTimeout <= 0 {
		cfg.StreamWriteTimeout = 10 * time.Second
	}
	if cfg.StreamMaxLag <= 0 {
		cfg.StreamMaxLag = 10_000
	}
	if cfg.TokenCacheTTL == 0 {
		cfg.TokenCacheTTL = 2 * time.Second
	}
	if cfg.PasswordParams == (auth.Params{}) {
		cfg.PasswordParams = auth.DefaultParams()
	}
	if cfg.Webhooks == nil {
		cfg.Webhooks = webhook.New(cfg.Store, cfg.Box, webhook.NewClient(webhook.ClientConfig{}), webhook.Config{Log: cfg.Log})
	}
	if cfg.WebhookLagWarn <= 0 {
		cfg.WebhookLagWarn = 5 * time.Minute
	}
	if cfg.MaxStreamsPerUser == 0 {
		cfg.MaxStreamsPerUser = 20
	}
	if cfg.MaxStreamsPerTask == 0 {
		cfg.MaxStreamsPerTask = 8
	}
	guard := cfg.LoginGuard
	if guard == nil {
		guard = auth.NewLoginGuard(auth.DefaultLoginPolicy())
	}
	s := &Server{
		cfg: cfg, log: cfg.Log, store: cfg.Store, tasks: cfg.Tasks, mux: http.NewServeMux(),
		guard: guard, gate: passwordGate(cfg, cfg.Log), tokens: newTokenCache(cfg.TokenCacheTTL),
		streams: newStreamCaps(cfg.MaxStreamsPerUser, cfg.MaxStreamsPerTask),
		started: time.Now(), closing: make(chan struct{}),
	}
	s.api = humago.New(s.mux, s.humaConfig())
	s.routes()

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusForbidden, "cross-origin request refused: unsafe requests must come from this site's own pages")
	}))
	s.handler = s.recover(s.observe(cop.Handler(s.mux)))
	return s, nil
}

// passwordGate bounds the password checks running at once, by cfg or by the memory available.
func passwordGate(cfg Config, log *slog.Logger) *auth.Gate {
	wait := cfg.LoginWait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	n := cfg.LoginConcurrency
	if n <= 0 {
		perHash := uint64(cfg.PasswordParams.Memory) * 1024
		avail, ok := auth.AvailableMemory()
		if !ok {
			avail = 1 << 30 // unknown: assume a small machine
		}
		n = auth.GateSize(perHash, avail, runtime.GOMAXPROCS(0))
		log.Info("password checks bounded by the memory available", "at_once", n,
			"available_mib", avail>>20, "per_check_mib", perHash>>20)
	}
	return auth.NewGate(n, wait)
}

func (s *Server) humaConfig() huma.Config {
	c := huma.DefaultConfig("mailsync", s.cfg.Version)
	c.OpenAPIPath = "/api/openapi"
	c.DocsPath = ""
	c.SchemasPath = ""
	// No $schema links in responses: the UI and scripts read plain JSON.
	c.CreateHooks = nil
	c.Info.Description = "Keeps a complete, current copy of IMAP mailboxes and serves it."
	c.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer":  {Type: "http", Scheme: "bearer", Description: "An API token (mailsync token create EMAIL)."},
		"session": {Type: "apiKey", In: "cookie", Name: sessionCookie, Description: "The web UI's session, from POST /api/login."},
	}
	c.Transformers = append(c.Transformers, scrubErrorValues)
	return c
}

// scrubErrorValues removes the echoed input values huma puts in validation errors: one of them
// could be a password, and no response may ever carry one.
func scrubErrorValues(_ huma.Context, _ string, v any) (any, error) {
	if e, ok := v.(*huma.ErrorModel); ok {
		for _, d := range e.Errors {
			d.Value = nil
		}
	}
	return v, nil
}

// Handler is the API's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves the Prometheus metrics, behind MetricsToken when one is set.
func (s *Server) MetricsHandler() http.Handler {
	h := s.cfg.Metrics.Handler()
	if s.cfg.MetricsToken == "" {
		return h
	}
	want := sha256.Sum256([]byte("Bearer " + s.cfg.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailsync metrics"`)
			writeProblem(w, http.StatusUnauthorized, "the metrics need the operator's metrics token: Authorization: Bearer TOKEN")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Shutdown marks the server as going away: /readyz answers 503 and every SSE stream ends, so
// http.Server.Shutdown does not wait for them. Wire it with http.Server.RegisterOnShutdown.
func (s *Server) Shutdown() {
	s.closeOnce.Do(func() { close(s.closing) })
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
