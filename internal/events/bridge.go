package events

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"mailsync/internal/task"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultChannel is the PostgreSQL notification channel instances share.
const DefaultChannel = "mailsync_tasks"

// Bridge joins the Buses of several instances through PostgreSQL LISTEN/NOTIFY. Publish signals
// the local Bus at once and queues a NOTIFY; Run listens on a dedicated connection and relays
// other instances' notifications to the local Bus. Both connections reconnect by themselves.
//
// Notifications are hints: PostgreSQL drops them while a listener is disconnected, and the
// outgoing queue drops them when full, so watchers also poll.
type Bridge struct {
	bus      *Bus
	dsn      string
	channel  string
	instance string
	log      *slog.Logger
	out      chan string
}

// outQueue bounds the NOTIFYs waiting to be sent; past it, signals are dropped (hints only).
const outQueue = 1024

// NewBridge returns a Bridge relaying between bus and the PostgreSQL database at dsn on channel
// (DefaultChannel when empty). Nothing connects until Run.
func NewBridge(bus *Bus, dsn, channel string, log *slog.Logger) *Bridge {
	if channel == "" {
		channel = DefaultChannel
	}
	return &Bridge{bus: bus, dsn: dsn, channel: channel, instance: rand.Text()[:12], log: log,
		out: make(chan string, outQueue)}
}

// Publish signals the task's local subscribers and, through PostgreSQL, every other instance's.
// It never blocks.
func (br *Bridge) Publish(taskID string) {
	br.bus.Publish(taskID)
	select {
	case br.out <- taskID:
	default:
	}
}

// TaskChanged publishes t's id, and WorkQueued when t is queued, here and on every other
// instance; it has the shape of task.Manager.Changed.
func (br *Bridge) TaskChanged(t task.Task) {
	br.Publish(t.ID)
	if t.State == task.Queued {
		br.Publish(WorkQueued)
	}
}

// Run listens and notifies until ctx ends; it returns nil then. Connection failures are logged
// and retried with backoff, never returned.
func (br *Bridge) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		br.retry(ctx, "notify", br.notify)
	}()
	br.retry(ctx, "listen", br.listen)
	<-done
	return nil
}

// retry runs fn until ctx ends, waiting longer after each failure (up to 5 s).
func (br *Bridge) retry(ctx context.Context, what string, fn func(ctx context.Context, connected func()) error) {
	const minWait, maxWait = 100 * time.Millisecond, 5 * time.Second
	wait := minWait
	for ctx.Err() == nil {
		err := fn(ctx, func() { wait = minWait })
		if ctx.Err() != nil {
			return
		}
		br.log.Warn("events: PostgreSQL bridge lost its connection; reconnecting", "role", what, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}

func (br *Bridge) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, br.dsn)
	if err != nil {
		return nil, fmt.Errorf("events: connect: %w", err)
	}
	return conn, nil
}

func (br *Bridge) listen(ctx context.Context, connected func()) error {
	conn, err := br.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{br.channel}.Sanitize()); err != nil {
		return fmt.Errorf("events: listen: %w", err)
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("events: wait for notification: %w", err)
		}
		instance, taskID, ok := strings.Cut(n.Payload, ":")
		if !ok || instance == br.instance {
			continue // malformed, or our own: the local bus already had it
		}
		br.bus.Publish(taskID)
	}
}

func (br *Bridge) notify(ctx context.Context, connected func()) error {
	conn, err := br.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	connected()
	for {
		var taskID string
		select {
		case <-ctx.Done():
			return nil
		case taskID = <-br.out:
		}
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", br.channel, br.instance+":"+taskID); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("events: notify: %w", err)
		}
	}
}

// closeConn closes conn within a short deadline of its own: the run's context is over by then.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn.Close(ctx)
}
