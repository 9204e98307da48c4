package main

import (
	"context"
	"fmt"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/webhook"
)

// ServeCmd runs everything a mailsync instance does: the HTTP API, the workers, the reaper and
// the scheduler. Several instances may share one PostgreSQL database.
type ServeCmd struct {
	Addr             string        `name:"addr" env:"MAILSYNC_ADDR" default:"127.0.0.1:8080" help:"Address to listen on."`
	Workers          int           `name:"workers" env:"MAILSYNC_WORKERS" default:"4" help:"How many syncs run at once on this instance."`
	ScheduleInterval time.Duration `name:"schedule-interval" env:"MAILSYNC_SCHEDULE_INTERVAL" default:"30s" help:"How often to look for accounts whose scheduled sync is due."`
	SecureCookies    bool          `name:"secure-cookies" env:"MAILSYNC_SECURE_COOKIES" help:"Mark the session cookie Secure (when served over HTTPS or behind a TLS proxy)."`
	SessionTTL       time.Duration `name:"session-ttl" env:"MAILSYNC_SESSION_TTL" default:"720h" help:"How long a web login lasts."`
	ChangeRetention  time.Duration `name:"change-retention" env:"MAILSYNC_CHANGE_RETENTION" default:"720h" help:"How long the change log keeps a change (any positive duration, e.g. 720h for 30 days, 2160h for 90); a reader whose cursor is older must re-read the folders."`
	IDLE             bool          `name:"idle" env:"MAILSYNC_IDLE" help:"Hold an IMAP IDLE on every account's INBOX and sync as soon as the server reports new mail (one IMAP connection per account)."`
	HTTP             HTTPFlags     `embed:"" group:"HTTP limits"`
	Webhooks         WebhookFlags  `embed:"" group:"Webhooks"`
	Demo             bool          `name:"demo" env:"MAILSYNC_DEMO" help:"Also run a built-in IMAP server on loopback, filled with a few thousand generated messages, and a demo user and account for it: try mailsync without a mailbox of your own."`
}

// HTTPFlags bound what clients, signed in or not, can take of a server.
type HTTPFlags struct {
	ReadHeaderTimeout   time.Duration `name:"http-read-header-timeout" env:"MAILSYNC_HTTP_READ_HEADER_TIMEOUT" default:"10s" help:"A request's headers must arrive within this."`
	IdleTimeout         time.Duration `name:"http-idle-timeout" env:"MAILSYNC_HTTP_IDLE_TIMEOUT" default:"60s" help:"A keep-alive connection without a new request this long is closed (an open event stream is not idle)."`
	MaxConns            int           `name:"http-max-conns" env:"MAILSYNC_HTTP_MAX_CONNS" default:"1024" help:"Connections open at once; more wait until one closes (-1: no cap)."`
	LoginConcurrency    int           `name:"login-concurrency" env:"MAILSYNC_LOGIN_CONCURRENCY" default:"0" help:"Password checks (64 MiB each) running at once; 0: sized from the memory available."`
	LoginWait           time.Duration `name:"login-wait" env:"MAILSYNC_LOGIN_WAIT" default:"2s" help:"How long a login waits for a password check slot before answering 503."`
	StreamsPerUser      int           `name:"max-streams-per-user" env:"MAILSYNC_MAX_STREAMS_PER_USER" default:"20" help:"Event streams one user may hold open on this instance (-1: no cap)."`
	StreamsPerTask      int           `name:"max-streams-per-task" env:"MAILSYNC_MAX_STREAMS_PER_TASK" default:"8" help:"Event streams open on one task on this instance (-1: no cap)."`
	ChangesWriteTimeout time.Duration `name:"changes-write-timeout" env:"MAILSYNC_CHANGES_WRITE_TIMEOUT" default:"10s" help:"A change stream whose client takes none of a write for this long is disconnected (it resumes from its Last-Event-ID)."`
	ChangesMaxLag       int64         `name:"changes-max-lag" env:"MAILSYNC_CHANGES_MAX_LAG" default:"10000" help:"A change stream that falls this many changes behind an account, and keeps falling behind, ends with an overflow event."`
	MetricsAddr         string        `name:"metrics-addr" env:"MAILSYNC_METRICS_ADDR" help:"Serve /metrics on this address instead of the API's."`
	MetricsToken        string        `name:"metrics-token" env:"MAILSYNC_METRICS_TOKEN" help:"Require this bearer token for /metrics (set it in the environment, not on the command line)."`
}

// WebhookFlags are the webhook deliverer's settings (docs/changes.md#webhooks).
type WebhookFlags struct {
	AllowPrivate   bool          `name:"webhook-allow-private" env:"MAILSYNC_WEBHOOK_ALLOW_PRIVATE" help:"Let webhooks go to loopback, private and link-local addresses (refused otherwise, at registration and at every connect)."`
	Timeout        time.Duration `name:"webhook-timeout" env:"MAILSYNC_WEBHOOK_TIMEOUT" default:"15s" help:"A webhook POST must be answered, body included, within this."`
	ConnectTimeout time.Duration `name:"webhook-connect-timeout" env:"MAILSYNC_WEBHOOK_CONNECT_TIMEOUT" default:"5s" help:"Bound on a webhook receiver's TCP connect and TLS handshake."`
	Poll           time.Duration `name:"webhook-poll" env:"MAILSYNC_WEBHOOK_POLL" default:"1s" help:"How often to look for undelivered changes committed by other instances (this instance's own wake it at once)."`
	Batch          int           `name:"webhook-batch" env:"MAILSYNC_WEBHOOK_BATCH" default:"100" help:"The most changes one webhook POST carries."`
	Concurrency    int           `name:"webhook-concurrency" env:"MAILSYNC_WEBHOOK_CONCURRENCY" default:"4" help:"(endpoint, account) pairs this instance delivers at once."`
	RetryBase      time.Duration `name:"webhook-retry-base" env:"MAILSYNC_WEBHOOK_RETRY_BASE" default:"5s" help:"The first retry's delay; each failure in a row doubles it (with jitter)."`
	RetryMax       time.Duration `name:"webhook-retry-max" env:"MAILSYNC_WEBHOOK_RETRY_MAX" default:"1h" help:"The longest delay between retries."`
	GiveUpAfter    time.Duration `name:"webhook-give-up-after" env:"MAILSYNC_WEBHOOK_GIVE_UP_AFTER" default:"72h" help:"An endpoint failing this long is disabled (its owner re-enables it; nothing is skipped)."`
	LagWarn        time.Duration `name:"webhook-lag-warn" env:"MAILSYNC_WEBHOOK_LAG_WARN" default:"5m" help:"/api/health/sync warns when an enabled endpoint is this far behind."`
}

// Validate refuses settings that cannot work: the lease must outlast a POST.
func (f WebhookFlags) Validate() error {
	if f.Timeout <= 0 || f.ConnectTimeout <= 0 || f.Poll <= 0 || f.RetryBase <= 0 || f.RetryMax < f.RetryBase || f.GiveUpAfter <= 0 {
		return fmt.Errorf("webhook timings must be positive, with --webhook-retry-max at least --webhook-retry-base")
	}
	if f.Batch < 1 || f.Batch > 1000 {
		return fmt.Errorf("--webhook-batch must be between 1 and 1000, not %d", f.Batch)
	}
	return nil
}

func (f WebhookFlags) config() (webhook.Config, webhook.ClientConfig) {
	return webhook.Config{BatchSize: f.Batch, Concurrency: f.Concurrency, Poll: f.Poll, Lease: 2*f.Timeout + 5*time.Second,
			RetryBase: f.RetryBase, RetryMax: f.RetryMax, GiveUpAfter: f.GiveUpAfter},
		webhook.ClientConfig{ConnectTimeout: f.ConnectTimeout, Timeout: f.Timeout, AllowPrivate: f.AllowPrivate}
}

func (f HTTPFlags) limits() httpapi.ConnLimits {
	return httpapi.ConnLimits{ReadHeaderTimeout: f.ReadHeaderTimeout, IdleTimeout: f.IdleTimeout, MaxConns: f.MaxConns}
}

// Validate refuses a change retention that is not a positive duration before anything is opened.
func (c *ServeCmd) Validate() error {
	if c.ChangeRetention <= 0 {
		return fmt.Errorf("--change-retention must be a positive duration (such as 720h for 30 days), not %s", c.ChangeRetention)
	}
	return nil
}

// Run is flags → instance.Config → instance.Run.
func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	log := g.logger
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	key, err := g.serverKey(ctx, s)
	if err != nil {
		_ = s.Close()
		return err
	}
	box, err := secret.New(key)
	if err != nil {
		_ = s.Close()
		return err
	}
	var demoRun *demo
	if c.Demo {
		if demoRun, err = startDemo(ctx, c.Addr, s, box, log); err != nil {
			_ = s.Close()
			return err
		}
		defer demoRun.Close()
	}
	reg := metrics.New(s)
	if err := g.setupOAuth(ctx, s, box, reg); err != nil {
		_ = s.Close()
		return err
	}
	engine := g.syncEngine(s, box, reg)
	hooks, hookClient := c.Webhooks.config()
	cfg := instance.Config{
		Webhooks: hooks, WebhookClient: hookClient,
		Store: s, DSN: g.DB, Key: key, Lifecycle: g.Lifecycle.config(), Login: engine,
		Body: syncBody(engine, reg), Metrics: reg, Log: log,
		Workers: c.Workers, ScheduleInterval: c.ScheduleInterval, ChangeRetention: c.ChangeRetention,
		Addr: c.Addr, MetricsAddr: c.HTTP.MetricsAddr, Limits: c.HTTP.limits(), SessionTTL: c.SessionTTL,
		API: httpapi.Config{
			Version: version, DataDir: g.DataDir, SecureCookies: c.SecureCookies,
			LoginConcurrency: c.HTTP.LoginConcurrency, LoginWait: c.HTTP.LoginWait,
			MaxStreamsPerUser: c.HTTP.StreamsPerUser, MaxStreamsPerTask: c.HTTP.StreamsPerTask,
			StreamWriteTimeout: c.HTTP.ChangesWriteTimeout, StreamMaxLag: c.HTTP.ChangesMaxLag,
			MetricsToken: c.HTTP.MetricsToken, WebhookLagWarn: c.Webhooks.LagWarn,
			OAuth: g.tokens, OAuthRedirectURL: g.OAuth.RedirectURL,
		},
	}
	if c.IDLE {
		cfg.Watch = engine.Watch
	}
	in, err := instance.New(cfg)
	if err != nil {
		_ = s.Close()
		return fmt.Errorf("serve: %w", err)
	}
	defer in.Close()
	log.Info("mailsync listening", "url", in.URL(), "db", s.Dialect())
	if demoRun != nil {
		demoRun.announce(g.stdout, in.URL())
	}
	if err := in.Run(ctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
