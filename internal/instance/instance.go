// Package instance is mailsync's composition root: one Instance is the API, the web UI, the
// workers, the reaper, the scheduler, the IMAP IDLE watchers, the webhook deliverer, the event bus
// and its LISTEN/NOTIFY bridge, and the order in which they stop. `mailsync serve` builds one from
// its flags; the HTTP and browser tests and the HTTP benchmark build the same one with their own
// timings, so what they exercise is the wiring that ships.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/changes"
	"mailsync/internal/events"
	"mailsync/internal/httpapi"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/web"
	"mailsync/internal/webhook"
	"mailsync/internal/worker"
)

// Config is everything an Instance is made of. Store, Key, Lifecycle and Login are required.
type Config struct {
	// Store is the migrated database. The Instance owns it from New on: Close closes it.
	Store *store.Store
	// DSN is the database's address, for the LISTEN/NOTIFY bridge on PostgreSQL (unused on SQLite).
	DSN string
	// Key is the server key: the account-secret box and the session key derive from it.
	Key []byte
	// Lifecycle is the sync tasks' timings (task.DefaultConfig for production values).
	Lifecycle task.Config
	// Login checks IMAP credentials when an account is added or changed.
	Login httpapi.LoginChecker
	// Body is what a worker runs for a task; nil: this instance runs no worker.
	Body worker.Body
	// Watch, when set, holds an IMAP IDLE on an account until ctx ends (syncer.Syncer.Watch); the
	// Instance then runs a watcher that syncs an account as soon as its server reports new mail.
	Watch func(ctx context.Context, a store.Account, changed func()) error
	// Metrics is the registry the body reports into as well; nil: a new one on Store.
	Metrics *metrics.Registry
	Log     *slog.Logger

	// Workers is how many syncs run at once; WorkerPoll, ProgressEvery and ShutdownGrace are the
	// worker's timings (zero: worker's defaults).
	Workers       int
	WorkerPoll    time.Duration
	ProgressEvery time.Duration
	ShutdownGrace time.Duration
	// ScheduleInterval is how often the scheduler looks for due accounts; zero: no scheduler.
	ScheduleInterval time.Duration
	// ActionInterval is how often an account whose actions wait with no task gets one (zero: 2 s).
	ActionInterval time.Duration
	// NoReaper leaves dead tasks dead until a Start replaces them (tests that play the reaper).
	NoReaper bool
	// ChangeRetention is how long the change log keeps a change (zero: 720h, 30 days); a
	// pruner removes older ones every PruneInterval (zero: 10 minutes).
	ChangeRetention time.Duration
	PruneInterval   time.Duration

	// Addr, when set, is where Run serves Handler (":0" picks a port; URL says which). Empty:
	// the caller serves Handler itself.
	Addr string
	// MetricsAddr, when set, serves /metrics there instead of on Addr.
	MetricsAddr string
	// Limits bound what clients can take of the listeners.
	Limits httpapi.ConnLimits
	// ShutdownTimeout is how long Run waits for HTTP requests to finish (zero: 15 s).
	ShutdownTimeout time.Duration

	// API carries the API's own settings (sessions TTL, cookies, login limits, stream caps, SSE
	// timings, password hashing costs); its Store, Tasks, Events, Box, Login, Sessions, Metrics
	// and Log are filled in by New.
	API httpapi.Config
	// SessionTTL is how long a web login lasts (zero: 30 days).
	SessionTTL time.Duration

	// Webhooks are the deliverer's settings (its Metrics and Log are filled in by New), and
	// WebhookClient bounds its requests and says whether private addresses may be reached.
	Webhooks      webhook.Config
	WebhookClient webhook.ClientConfig
	// NoWebhooks runs no deliverer on this instance (the API still manages endpoints).
	NoWebhooks bool
}

// DefaultChangeRetention is how long the change log keeps a change unless configured: 30 days.
const DefaultChangeRetention = 720 * time.Hour

// Instance is one running mailsync. Build it with New, serve Handler (or let Run serve Addr),
// Run it until its context ends, then Close it.
type Instance struct {
	cfg     Config
	log     *slog.Logger
	Store   *store.Store
	Tasks   *task.Manager
	Bus     *events.Bus
	Box     *secret.Box
	Metrics *metrics.Registry
	API     *httpapi.Server
	// Webhooks delivers the change log to the users' endpoints.
	Webhooks *webhook.Deliverer

	handler         http.Handler
	url, metricsURL string
	publish         func(task.Task)
	starter         *worker.ActionStarter
	publishChanges  func(topic string)
	bridge          *events.Bridge
	ln, metricsLn   net.Listener
	closeOnce       sync.Once
}

// New assembles an Instance from cfg and opens its listeners, so that URL is known before Run.
func New(cfg Config) (*Instance, error) {
	if cfg.Store == nil || len(cfg.Key) == 0 || cfg.Login == nil {
		return nil, errors.New("instance: Store, Key and Login are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 720 * time.Hour
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.ChangeRetention <= 0 {
		cfg.ChangeRetention = DefaultChangeRetention
	}
	s := cfg.Store
	tasks, err := task.NewManager(s, cfg.Lifecycle)
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	box, err := secret.New(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = metrics.New(s)
	}
	in := &Instance{cfg: cfg, log: cfg.Log, Store: s, Tasks: tasks, Bus: events.NewBus(), Box: box, Metrics: reg}

	// Task changes reach SSE streams through the bus; on PostgreSQL the bridge carries them to
	// every other instance too. They are hints: streams re-read the row.
	in.publish = in.Bus.TaskChanged
	if s.Dialect() == "postgres" {
		in.bridge = events.NewBridge(in.Bus, cfg.DSN, "", cfg.Log)
		in.publish = in.bridge.TaskChanged
	}
	// A commit that wrote changes wakes the change streams of its account here and, through the
	// bridge, on every other instance. A hint too: streams re-read the change log.
	publishTopic := in.Bus.Publish
	if in.bridge != nil {
		publishTopic = in.bridge.Publish
	}
	// An action that joined a task after that task's last push waits for the next task: a task's
	// end is when to look for such actions (the starter's interval is only the net under it).
	in.starter = &worker.ActionStarter{Actions: s, Tasks: tasks, Interval: cfg.ActionInterval, Logger: cfg.Log}
	tasks.Changed = func(t task.Task) {
		in.publish(t)
		if !t.State.Active() {
			reg.TaskFinished(t)
			in.starter.Nudge()
		}
	}

	whc := cfg.Webhooks
	whc.Metrics, whc.Log = reg, cfg.Log
	in.Webhooks = webhook.New(s, box, webhook.NewClient(cfg.WebhookClient), whc)
	reg.WatchWebhooks(func(ctx context.Context) ([]metrics.WebhookLag, error) { return webhook.Lags(ctx, s) })
	in.publishChanges = publishTopic
	s.OnChanges(in.changed)

	api := cfg.API
	api.Webhooks = in.Webhooks
	api.Store, api.Tasks, api.Events, api.Box, api.Login, api.Metrics, api.Log = s, tasks, in.Bus, box, cfg.Login, reg, cfg.Log
	if check, ok := cfg.Login.(httpapi.SMTPChecker); ok && api.SMTPCheck == nil {
		api.SMTPCheck = check // the sync engine tests SMTP logins as it tests IMAP ones
	}
	api.Sessions = auth.NewSessions(auth.DeriveKey(cfg.Key, "session"), cfg.SessionTTL)
	api.MetricsElsewhere = api.MetricsElsewhere || cfg.MetricsAddr != ""
	if in.API, err = httpapi.New(api); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	in.handler = handler(in.API)

	if cfg.Addr != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("instance: %w", err)
		}
		in.ln = cfg.Limits.Listener(ln)
		in.url = "http://" + ln.Addr().String()
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			if in.ln != nil {
				_ = in.ln.Close()
			}
			return nil, fmt.Errorf("instance: metrics: %w", err)
		}
		in.metricsLn = cfg.Limits.Listener(mln)
		in.metricsURL = "http://" + mln.Addr().String() + "/metrics"
	}
	return in, nil
}

// changed is the store's change hook (Store.OnChanges), called after every commit that wrote
// changes. It counts them (the changes-written metric), wakes the account's change streams here and, through the bridge, on every other
// instance, and this instance's webhook deliverer (deliverers elsewhere find the changes at their
// next poll). Both are hints: streams and deliverers read the change log itself. It must not block.
func (in *Instance) changed(accountID int64, committed []changes.Change) {
	in.publishChanges(events.ChangesTopic(accountID))
	in.Webhooks.Wake()
	counts := map[changes.Kind]int{}
	for _, c := range committed {
		counts[c.Kind]++
	}
	for k, n := range counts {
		in.Metrics.ChangesWritten(k, n)
	}
}

// handler is everything an instance answers: the API with its probes and metrics, and at "/"
// the web UI.
func handler(api *httpapi.Server) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/", "/livez", "/readyz", "/metrics", "/oauth/"} {
		mux.Handle(p, api.Handler())
	}
	mux.Handle("/", web.Handler())
	return mux
}

// Handler is the API, its probes and metrics, and the web UI.
func (in *Instance) Handler() http.Handler { return in.handler }

// URL is where Run serves Handler ("" when Config.Addr was empty).
func (in *Instance) URL() string { return in.url }

// MetricsURL is where Run serves /metrics on its own ("" when Config.MetricsAddr was empty).
func (in *Instance) MetricsURL() string { return in.metricsURL }

// Run serves the listeners and runs the bridge, workers, reaper, change-log pruner, scheduler and watchers until
// ctx ends or a listener fails, then stops them in order: HTTP first (event streams are told to
// end, requests get ShutdownTimeout to finish), then the background loops (the workers hand
// running syncs back to the queue). Without listeners Run may be called again after it returns,
// as a restarted process would: tests use that to stop and restart the workers.
func (in *Instance) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	if in.bridge != nil {
		wg.Go(func() { _ = in.bridge.Run(ctx) })
	}
	if in.cfg.Body != nil {
		// A task queued here or on another instance wakes the idle claim loop at once.
		queued, stopQueued := in.Bus.SubscribeQueued()
		defer stopQueued()
		w := worker.New(in.Tasks, in.cfg.Body, worker.Config{
			Concurrency: in.cfg.Workers, PollInterval: in.cfg.WorkerPoll, ProgressEvery: in.cfg.ProgressEvery,
			ShutdownGrace: in.cfg.ShutdownGrace, Logger: in.log, Changed: in.publish, Wakeups: queued,
		})
		in.log.Info("worker running", "worker", w.Owner())
		wg.Go(func() { _ = w.Run(ctx) })
	}
	if !in.cfg.NoReaper {
		reaper := &worker.Reaper{Tasks: in.Tasks, Interval: in.cfg.Lifecycle.ReapInterval, Logger: in.log,
			Reaped: func(ts []task.Task) { in.Metrics.ZombiesReaped(len(ts)) }}
		wg.Go(func() { _ = reaper.Run(ctx) })
	}
	pruner := &worker.Pruner{Changes: in.Store, Retention: in.cfg.ChangeRetention, Interval: in.cfg.PruneInterval,
		Logger: in.log, Pruned: in.Metrics.ChangesPruned}
	wg.Go(func() { _ = pruner.Run(ctx) })
	if in.cfg.ScheduleInterval > 0 {
		scheduler := &worker.Scheduler{Accounts: in.Store, Tasks: in.Tasks, Interval: in.cfg.ScheduleInterval, Logger: in.log}
		wg.Go(func() { _ = scheduler.Run(ctx) })
	}
	if !in.cfg.NoWebhooks {
		wg.Go(func() { _ = in.Webhooks.Run(ctx) })
	}
	// Actions whose task ended without them (or whose send was held back) get a task.
	wg.Go(func() { _ = in.starter.Run(ctx) })
	if in.cfg.Watch != nil {
		watcher := &worker.Watcher{Accounts: in.Store, Watch: in.cfg.Watch, Tasks: in.Tasks, Logger: in.log}
		wg.Go(func() { _ = watcher.Run(ctx) })
	}

	serveErr := make(chan error, 2)
	var servers []*http.Server
	if in.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", in.API.MetricsHandler())
		msrv := in.cfg.Limits.Server(mux)
		servers = append(servers, msrv)
		ln := in.metricsLn
		in.log.Info("metrics listening", "url", in.MetricsURL())
		go func() { serveErr <- msrv.Serve(ln) }()
	}
	if in.ln != nil {
		srv := in.cfg.Limits.Server(in.handler)
		srv.RegisterOnShutdown(in.API.Shutdown)
		servers = append(servers, srv)
		ln := in.ln
		go func() { serveErr <- srv.Serve(ln) }()
	}
	in.ln, in.metricsLn = nil, nil // served now: Shutdown closes them

	var err error
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if len(servers) > 0 {
		in.log.Info("shutting down: handing running syncs back to the queue")
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), in.cfg.ShutdownTimeout)
	defer cancelShutdown()
	for i := len(servers) - 1; i >= 0; i-- {
		if serr := servers[i].Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			in.log.Warn("http shutdown", "err", serr)
		}
	}
	cancel()
	wg.Wait()
	return err
}

// Close ends the API's event streams, closes listeners Run never served, and closes the store.
// Call it after Run has returned.
func (in *Instance) Close() error {
	var err error
	in.closeOnce.Do(func() {
		in.API.Shutdown()
		for _, ln := range []net.Listener{in.ln, in.metricsLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		err = in.Store.Close()
	})
	return err
}
