package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/events"
	"mailsync/internal/httpapi"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// ServeCmd runs everything a mailsync instance does: the HTTP API, the workers, the reaper and
// the scheduler. Several instances may share one PostgreSQL database.
type ServeCmd struct {
	Addr             string        `name:"addr" env:"MAILSYNC_ADDR" default:"127.0.0.1:8080" help:"Address to listen on."`
	Workers          int           `name:"workers" env:"MAILSYNC_WORKERS" default:"4" help:"How many syncs run at once on this instance."`
	ScheduleInterval time.Duration `name:"schedule-interval" env:"MAILSYNC_SCHEDULE_INTERVAL" default:"30s" help:"How often to look for accounts whose scheduled sync is due."`
	SecureCookies    bool          `name:"secure-cookies" env:"MAILSYNC_SECURE_COOKIES" help:"Mark the session cookie Secure (when served over HTTPS or behind a TLS proxy)."`
	SessionTTL       time.Duration `name:"session-ttl" env:"MAILSYNC_SESSION_TTL" default:"720h" help:"How long a web login lasts."`
	IDLE             bool          `name:"idle" env:"MAILSYNC_IDLE" help:"Hold an IMAP IDLE on every account's INBOX and sync as soon as the server reports new mail (one IMAP connection per account)."`
	HTTP             HTTPFlags     `embed:"" group:"HTTP limits"`
	Demo             bool          `name:"demo" env:"MAILSYNC_DEMO" help:"Also run a built-in IMAP server on loopback, filled with a few thousand generated messages, and a demo user and account for it: try mailsync without a mailbox of your own."`
}

// HTTPFlags bound what clients, signed in or not, can take of a server.
type HTTPFlags struct {
	ReadHeaderTimeout time.Duration `name:"http-read-header-timeout" env:"MAILSYNC_HTTP_READ_HEADER_TIMEOUT" default:"10s" help:"A request's headers must arrive within this."`
	IdleTimeout       time.Duration `name:"http-idle-timeout" env:"MAILSYNC_HTTP_IDLE_TIMEOUT" default:"60s" help:"A keep-alive connection without a new request this long is closed (an open event stream is not idle)."`
	MaxConns          int           `name:"http-max-conns" env:"MAILSYNC_HTTP_MAX_CONNS" default:"1024" help:"Connections open at once; more wait until one closes (-1: no cap)."`
	LoginConcurrency  int           `name:"login-concurrency" env:"MAILSYNC_LOGIN_CONCURRENCY" default:"0" help:"Password checks (64 MiB each) running at once; 0: sized from the memory available."`
	LoginWait         time.Duration `name:"login-wait" env:"MAILSYNC_LOGIN_WAIT" default:"2s" help:"How long a login waits for a password check slot before answering 503."`
	StreamsPerUser    int           `name:"max-streams-per-user" env:"MAILSYNC_MAX_STREAMS_PER_USER" default:"20" help:"Event streams one user may hold open on this instance (-1: no cap)."`
	StreamsPerTask    int           `name:"max-streams-per-task" env:"MAILSYNC_MAX_STREAMS_PER_TASK" default:"8" help:"Event streams open on one task on this instance (-1: no cap)."`
	MetricsAddr       string        `name:"metrics-addr" env:"MAILSYNC_METRICS_ADDR" help:"Serve /metrics on this address instead of the API's."`
	MetricsToken      string        `name:"metrics-token" env:"MAILSYNC_METRICS_TOKEN" help:"Require this bearer token for /metrics (set it in the environment, not on the command line)."`
}

func (f HTTPFlags) limits() httpapi.ConnLimits {
	return httpapi.ConnLimits{ReadHeaderTimeout: f.ReadHeaderTimeout, IdleTimeout: f.IdleTimeout, MaxConns: f.MaxConns}
}

func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	log := g.logger
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	key, err := g.serverKey(ctx, s)
	if err != nil {
		return err
	}
	box, err := secret.New(key)
	if err != nil {
		return err
	}
	var demoRun *demo
	if c.Demo {
		if demoRun, err = startDemo(ctx, c.Addr, s, box, log); err != nil {
			return err
		}
		defer demoRun.Close()
	}
	reg := metrics.New(s)
	engine := g.syncEngine(s, box)
	body := syncBody(engine, reg)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Task changes reach SSE streams through the bus; on PostgreSQL the bridge carries them to
	// every other instance too. They are hints: streams re-read the row.
	bus := events.NewBus()
	publish := bus.TaskChanged
	if s.Dialect() == "postgres" {
		bridge := events.NewBridge(bus, g.DB, "", log)
		wg.Go(func() { _ = bridge.Run(ctx) })
		publish = bridge.TaskChanged
	}
	// A task queued here or on another instance wakes the idle claim loop at once.
	queued, stopQueued := bus.SubscribeQueued()
	defer stopQueued()
	w := worker.New(tasks, body, worker.Config{Concurrency: c.Workers, Logger: log, Changed: publish, Wakeups: queued})
	tasks.Changed = func(t task.Task) {
		publish(t)
		if !t.State.Active() {
			reg.TaskFinished(t)
		}
	}
	reaper := &worker.Reaper{Tasks: tasks, Interval: g.Lifecycle.ReapInterval, Logger: log,
		Reaped: func(ts []task.Task) { reg.ZombiesReaped(len(ts)) }}
	scheduler := &worker.Scheduler{Accounts: s, Tasks: tasks, Interval: c.ScheduleInterval, Logger: log}
	if c.IDLE {
		watcher := &worker.Watcher{Accounts: s, Watch: engine.Watch, Tasks: tasks, Logger: log}
		wg.Go(func() { _ = watcher.Run(ctx) })
	}

	api, err := httpapi.New(httpapi.Config{
		Store: s, Tasks: tasks, Events: bus, Box: box, Login: engine,
		Sessions: auth.NewSessions(auth.DeriveKey(key, "session"), c.SessionTTL), Metrics: reg,
		Log: log, Version: version, DataDir: g.DataDir, SecureCookies: c.SecureCookies,
		LoginConcurrency: c.HTTP.LoginConcurrency, LoginWait: c.HTTP.LoginWait,
		MaxStreamsPerUser: c.HTTP.StreamsPerUser, MaxStreamsPerTask: c.HTTP.StreamsPerTask,
		MetricsToken: c.HTTP.MetricsToken, MetricsElsewhere: c.HTTP.MetricsAddr != "",
	})
	if err != nil {
		return err
	}
	srv := c.HTTP.limits().Server(httpHandler(api))
	srv.RegisterOnShutdown(api.Shutdown)
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ln = c.HTTP.limits().Listener(ln)
	serveErr := make(chan error, 2)
	if c.HTTP.MetricsAddr != "" {
		mln, err := net.Listen("tcp", c.HTTP.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("serve: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", api.MetricsHandler())
		msrv := c.HTTP.limits().Server(mux)
		defer msrv.Close()
		log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
		go func() { serveErr <- msrv.Serve(c.HTTP.limits().Listener(mln)) }()
	}
	log.Info("mailsync listening", "url", "http://"+ln.Addr().String(), "db", s.Dialect(), "worker", w.Owner())
	if demoRun != nil {
		demoRun.announce(g.stdout, "http://"+ln.Addr().String())
	}

	// Each Run returns nil once ctx is done: there is nothing to report.
	wg.Go(func() { _ = w.Run(ctx) })
	wg.Go(func() { _ = reaper.Run(ctx) })
	wg.Go(func() { _ = scheduler.Run(ctx) })
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: handing running syncs back to the queue")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	cancel()
	wg.Wait()
	log.Info("stopped")
	return nil
}
