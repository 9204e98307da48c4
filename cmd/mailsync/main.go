// Command mailsync keeps a complete, current copy of IMAP mailboxes in its own database and
// serves it over HTTP. This package is the only place where the parts are wired together.
package main

import (
	"mailsync/internal/oauth"

	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"mailsync/internal/netpolicy"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// CLI is every command and flag. Every flag can also be set with its MAILSYNC_* variable.
type CLI struct {
	Globals

	Serve   ServeCmd   `cmd:"" help:"Run the HTTP API, the web UI, the workers and the reaper."`
	Account AccountCmd `cmd:"" help:"Manage IMAP accounts."`
	Sync    SyncCmd    `cmd:"" help:"Sync one account now (joins its live sync if there is one) and wait for the end."`
	Status  StatusCmd  `cmd:"" help:"Show each account's current or last sync."`
	Changes ChangesCmd `cmd:"" help:"Print an account's changes; --follow waits for new ones (a tail -f for mail)."`
	Flag    FlagCmd    `cmd:"" help:"Set or clear flags of stored messages on the server, and wait until it is done."`
	Move    MoveCmd    `cmd:"" help:"Move stored messages to another folder on the server, and wait until it is done."`
	Send    SendCmd    `cmd:"" help:"Send a message (its text on stdin) through the account's SMTP server, and wait until it is sent."`
	Migrate MigrateCmd `cmd:"" help:"Bring the database schema up to date."`
	Repair  RepairCmd  `cmd:"" help:"Reap dead sync tasks once and print every row changed (the operator's one-shot fix)."`
	User    UserCmd    `cmd:"" help:"Manage users."`
	Token   TokenCmd   `cmd:"" help:"Manage API tokens."`
	Version VersionCmd `cmd:"" help:"Print the version."`
}

// Globals are the flags every command shares.
type Globals struct {
	DB        string     `name:"db" env:"MAILSYNC_DB" default:"sqlite:./data/mailsync.db" help:"Database: sqlite:PATH or postgres://USER@HOST/DB."`
	DataDir   string     `name:"data-dir" env:"MAILSYNC_DATA_DIR" default:"./data" help:"Directory for the server key file and other local state."`
	LogLevel  slog.Level `name:"log-level" env:"MAILSYNC_LOG_LEVEL" default:"info" help:"Log level: debug, info, warn, error."`
	LogFormat string     `name:"log-format" env:"MAILSYNC_LOG_FORMAT" default:"text" enum:"text,json" help:"Log format: text or json."`
	// AllowDestinations is a global flag because every sync re-checks the policy: serve's workers
	// and the sync command alike.
	AllowDestinations []string `name:"allow-destinations" env:"MAILSYNC_ALLOW_DESTINATIONS" sep:"," placeholder:"CIDR|ADDRESS|HOST,..." help:"Destinations that accounts of non-admin users may use beyond public addresses (loopback, private and link-local ranges are refused otherwise); administrators and the CLI may use any."`

	Lifecycle LifecycleFlags `embed:"" group:"Sync task lifecycle"`
	Limits    LimitFlags     `embed:"" group:"Limits on IMAP servers"`
	IMAP      IMAPFlags      `embed:"" group:"IMAP"`
	OAuth     OAuthFlags     `embed:"" group:"OAuth2 providers"`

	// Set by run, not by flags.
	stdout, stderr io.Writer
	logger         *slog.Logger
	destinations   *netpolicy.Policy
	// tokens is the OAuth2 token keeper, once setupOAuth made it (nil: no provider configured).
	tokens *oauth.Tokens
}

// LifecycleFlags are the timings of the task lifecycle (task.Config; docs/lifecycle.md#time-bounds).
type LifecycleFlags struct {
	HeartbeatInterval time.Duration `name:"heartbeat-interval" env:"MAILSYNC_HEARTBEAT_INTERVAL" default:"15s" help:"How often a running sync proves it is alive."`
	HeartbeatTimeout  time.Duration `name:"heartbeat-timeout" env:"MAILSYNC_HEARTBEAT_TIMEOUT" default:"60s" help:"A running sync silent this long is dead."`
	SelfFence         time.Duration `name:"self-fence" env:"MAILSYNC_SELF_FENCE" default:"45s" help:"A worker without a successful heartbeat this long stops writing."`
	ReapInterval      time.Duration `name:"reap-interval" env:"MAILSYNC_REAP_INTERVAL" default:"30s" help:"How often each instance looks for dead syncs."`
	QueuedTimeout     time.Duration `name:"queued-timeout" env:"MAILSYNC_QUEUED_TIMEOUT" default:"10m" help:"A sync queued this long without a worker is failed."`
	MaxAttempts       int           `name:"max-attempts" env:"MAILSYNC_MAX_ATTEMPTS" default:"3" help:"Attempts before a sync whose worker keeps dying is failed."`
	MaxRunTime        time.Duration `name:"max-run-time" env:"MAILSYNC_MAX_RUN_TIME" default:"2h" help:"A sync running longer than this is failed."`
	CrashBackoff      time.Duration `name:"crash-backoff" env:"MAILSYNC_CRASH_BACKOFF" default:"5m" help:"After a sync died on every attempt, the account's scheduled and push syncs wait this long, doubling for each such sync in a row (0: no backoff)."`
	CrashBackoffMax   time.Duration `name:"crash-backoff-max" env:"MAILSYNC_CRASH_BACKOFF_MAX" default:"6h" help:"The longest crash backoff."`
}

// Validate refuses timings that do not fit together before anything is opened.
func (f LifecycleFlags) Validate() error { return f.config().Validate() }

// IMAPFlags are the timeouts of every IMAP connection: syncs, login checks and IMAP push.
type IMAPFlags struct {
	DialTimeout    time.Duration `name:"imap-dial-timeout" env:"MAILSYNC_IMAP_DIAL_TIMEOUT" default:"15s" help:"Bound on the TCP connect, TLS handshake and greeting of an IMAP connection."`
	CommandTimeout time.Duration `name:"imap-command-timeout" env:"MAILSYNC_IMAP_COMMAND_TIMEOUT" default:"60s" help:"An IMAP command that receives nothing for this long is abandoned and the sync fails (a fetch's clock restarts at every message)."`
	StallAfter     time.Duration `name:"imap-stall-after" env:"MAILSYNC_IMAP_STALL_AFTER" default:"15s" help:"A sync whose IMAP server has sent nothing for this long (at most half the command timeout) shows as waiting for the server, and health warns."`
}

// Validate refuses timeouts that cannot work.
func (f IMAPFlags) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--imap-dial-timeout", f.DialTimeout}, {"--imap-command-timeout", f.CommandTimeout}, {"--imap-stall-after", f.StallAfter}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, not %s", d.name, d.v)
		}
	}
	return nil
}

func (f LifecycleFlags) config() task.Config {
	return task.Config{
		HeartbeatInterval: f.HeartbeatInterval,
		HeartbeatTimeout:  f.HeartbeatTimeout,
		SelfFence:         f.SelfFence,
		ReapInterval:      f.ReapInterval,
		QueuedTimeout:     f.QueuedTimeout,
		MaxAttempts:       f.MaxAttempts,
		MaxRunTime:        f.MaxRunTime,
		CrashBackoff:      f.CrashBackoff,
		CrashBackoffMax:   f.CrashBackoffMax,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode carries a kong-requested exit (help, usage errors) out of the parser.
type exitCode int

// run executes one command line and returns the process exit code. Every failure is one line on
// stderr, never a panic or a stack.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	var cli CLI
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	parser, err := kong.New(&cli,
		kong.Name("mailsync"),
		kong.Description("Keeps a complete, current copy of IMAP mailboxes and serves it."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.BindTo(stdin, (*io.Reader)(nil)),
	)
	if err != nil {
		fmt.Fprintf(stderr, "mailsync: %v\n", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "mailsync: %v\n", err)
		return 2
	}
	cli.stdout, cli.stderr = stdout, stderr
	cli.logger = newLogger(stderr, cli.LogFormat, cli.LogLevel)
	if cli.destinations, err = netpolicy.New(cli.AllowDestinations); err != nil {
		fmt.Fprintf(stderr, "mailsync: --allow-destinations: %v\n", err)
		return 2
	}
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintf(stderr, "mailsync: %s\n", oneLine(err))
		return 1
	}
	return 0
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// oneLine folds a multi-line error into one line for the terminal.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// openStore opens the database and brings its schema up to date. Every command that touches data
// migrates first: a fresh install needs no separate step, and a schema newer than this binary is
// refused before anything is written.
func (g *Globals) openStore(ctx context.Context) (*store.Store, error) {
	if strings.HasPrefix(g.DB, "sqlite:") {
		if dir := filepath.Dir(strings.TrimPrefix(g.DB, "sqlite:")); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
		}
	}
	s, err := store.Open(ctx, g.DB)
	if err != nil {
		return nil, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openTasks opens the database (as openStore does) with the sync-task lifecycle the flags set.
func (g *Globals) openTasks(ctx context.Context) (*store.Store, *task.Manager, error) {
	s, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := task.NewManager(s, g.Lifecycle.config())
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, m, nil
}
