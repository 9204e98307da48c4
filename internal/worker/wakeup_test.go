package worker_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/events"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// claimCounter counts the claims a worker tries, to know when its loop has gone idle.
type claimCounter struct {
	*store.Store
	claims atomic.Int64
}

func (c *claimCounter) ClaimTask(ctx context.Context, owner string, now time.Time) (task.Task, error) {
	defer c.claims.Add(1)
	return c.Store.ClaimTask(ctx, owner, now)
}

// instance is one mailsync instance's share of the test: its own store connections, lifecycle,
// bus and bridge, on the database every instance shares.
type instance struct {
	store  *claimCounter
	tasks  *task.Manager
	bus    *events.Bus
	bridge *events.Bridge
}

func newInstance(t *testing.T, dsn, channel string, migrate bool) *instance {
	t.Helper()
	s := &claimCounter{Store: storetest.OpenDSN(t, dsn, migrate)}
	tasks, err := task.NewManager(s, fast)
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	bridge := events.NewBridge(bus, storetest.PostgresURL(), channel, slog.New(slog.DiscardHandler))
	tasks.Changed = bridge.TaskChanged
	return &instance{store: s, tasks: tasks, bus: bus, bridge: bridge}
}

// TestTaskQueuedOnOneInstanceWakesAnothersIdleWorker: a sync queued through instance A's Manager
// is claimed by instance B's idle worker at once, through LISTEN/NOTIFY, not at B's next poll a
// minute later.
func TestTaskQueuedOnOneInstanceWakesAnothersIdleWorker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn := storetest.DSN(t, "postgres")
	channel := "mailsync_test_" + rand.Text()[:8]
	a := newInstance(t, dsn, channel, true)
	b := newInstance(t, dsn, channel, false)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = a.bridge.Run(ctx) })
	wg.Go(func() { _ = b.bridge.Run(ctx) })

	// Wait until B hears A: the bridges connect in the background.
	heard, stopHeard := b.bus.Subscribe("probe")
	defer stopHeard()
	for deadline := time.Now().Add(10 * time.Second); ; {
		a.bridge.Publish("probe")
		if received(heard, 100*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance B never heard instance A")
		}
	}

	const poll = time.Minute
	claimed := make(chan task.Task, 1)
	queued, stopQueued := b.bus.SubscribeQueued()
	defer stopQueued()
	w := worker.New(b.tasks, func(ctx context.Context, run *worker.Run) error {
		claimed <- run.Task
		return nil
	}, worker.Config{Owner: "instance-b", Concurrency: 1, PollInterval: poll, Wakeups: queued})
	wg.Go(func() { _ = w.Run(ctx) })
	for b.store.claims.Load() == 0 { // B's first look found nothing; from now on it waits
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)

	acct := storetest.SeedAccount(t, a.store.Store)
	startedAt := time.Now()
	tk, created, err := a.tasks.Start(ctx, acct.ID, false)
	if err != nil || !created {
		t.Fatalf("start on A: created %v, %v", created, err)
	}
	select {
	case got := <-claimed:
		if got.ID != tk.ID {
			t.Fatalf("B ran task %s, want %s", got.ID, tk.ID)
		}
		t.Logf("queued on A, claimed on B %s later (B polls every %s)", time.Since(startedAt).Round(time.Millisecond), poll)
	case <-time.After(5 * time.Second):
		t.Fatalf("B's idle worker did not claim the task queued on A within 5 s (it polls every %s)", poll)
	}
}

// received reports whether ch delivers a signal within d.
func received(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestWokenClaimLooksAgainPastALockedRow: the woken claim skips a queued task whose row another
// session holds for a moment (SKIP LOCKED, as a Sync now joining it does); the worker looks again
// shortly after, and claims it long before its next poll.
func TestWokenClaimLooksAgainPastALockedRow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.Open(t, "postgres")
	tasks, err := task.NewManager(s, fast)
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus()
	wakeups, stop := bus.SubscribeQueued()
	defer stop()
	w := worker.New(tasks, func(ctx context.Context, run *worker.Run) error { return nil },
		worker.Config{Concurrency: 1, PollInterval: time.Minute, Wakeups: wakeups})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = w.Run(ctx) })
	time.Sleep(100 * time.Millisecond) // the worker's first claim found nothing: it waits

	acct := storetest.SeedAccount(t, s)
	queued, _, err := tasks.Start(ctx, acct.ID, false) // Changed is not set: no wakeup yet
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT id FROM sync_tasks WHERE id = $1 FOR UPDATE`, queued.ID); err != nil {
		t.Fatal(err)
	}
	woke := time.Now()
	bus.TaskChanged(queued) // the wakeup arrives while the row is held
	time.Sleep(60 * time.Millisecond)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for {
		tk, err := tasks.Get(ctx, queued.ID)
		if err != nil {
			t.Fatal(err)
		}
		if tk.State != task.Queued {
			t.Logf("claimed %v after the wakeup", time.Since(woke).Round(time.Millisecond))
			break
		}
		if time.Since(woke) > 5*time.Second {
			t.Fatal("the task skipped while its row was held waited for the next poll")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
