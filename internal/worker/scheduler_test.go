package worker_test

import (
	"context"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

func TestSchedulerStartsDueAccountsOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		s := storetest.Open(t, d)
		clock := storetest.NewClock()
		tasks, err := task.NewManager(s, task.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		tasks.Now = clock.Now
		u, err := s.CreateUser(ctx, "sched@example.test", "x", false)
		if err != nil {
			t.Fatal(err)
		}
		add := func(name string, every time.Duration) store.Account {
			a, err := s.CreateAccount(ctx, store.Account{UserID: u.ID, Name: name, IMAPHost: "127.0.0.1", IMAPPort: 143,
				TLSMode: "none", Login: "x", SecretEnc: []byte("x"), SyncInterval: every})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		hourly := add("hourly", time.Hour)
		add("manual", 0)

		var started []task.Task
		sched := &worker.Scheduler{Accounts: s, Tasks: tasks, Interval: time.Hour, Started: func(t task.Task) { started = append(started, t) }}
		runOnce := func() { sched.StartDue(ctx) }
		runOnce()
		if len(started) != 1 || started[0].AccountID != hourly.ID {
			t.Fatalf("first look started %+v, want one task for the hourly account", started)
		}
		runOnce() // the task is still active: nothing new
		tk, ok, err := tasks.Claim(ctx, "w")
		if err != nil || !ok {
			t.Fatal(err)
		}
		if _, err := tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
			t.Fatal(err)
		}
		clock.Advance(59 * time.Minute)
		runOnce()
		if len(started) != 1 {
			t.Fatalf("a sync was started before the interval passed: %d", len(started))
		}
		clock.Advance(2 * time.Minute)
		runOnce()
		if len(started) != 2 {
			t.Fatalf("after the interval %d syncs were started, want 2", len(started))
		}
	})
}

// crash makes the account's task die on every attempt, as a worker crashing at the same place
// each time would: claimed, heartbeating in one phase, then silent until the reaper gives up.
func crash(t *testing.T, ctx context.Context, tasks *task.Manager, clock *storetest.Clock) {
	t.Helper()
	cfg := tasks.Config()
	for attempt := 1; attempt <= cfg.MaxAttempts; attempt++ {
		tk, ok, err := tasks.Claim(ctx, "doomed")
		if err != nil || !ok {
			t.Fatalf("claim %d: %v %v", attempt, ok, err)
		}
		if _, err := tasks.Heartbeat(ctx, tk.Lease(), task.Progress{Phase: "fetching Archive", FoldersTotal: 3, FoldersDone: 1}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(cfg.HeartbeatTimeout + time.Second)
		if _, err := tasks.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// An account whose syncs die on every attempt is held back from scheduled syncs with a growing
// delay; a user's Sync now still starts one, and a success lifts the hold.
func TestSchedulerHoldsAnAccountWhoseSyncsDie(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		s := storetest.Open(t, d)
		clock := storetest.NewClock()
		cfg := task.DefaultConfig() // crash backoff 5 min, doubling
		tasks, err := task.NewManager(s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tasks.Now = clock.Now
		u, err := s.CreateUser(ctx, "crashy@example.test", "x", false)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.CreateAccount(ctx, store.Account{UserID: u.ID, Name: "crashy", IMAPHost: "127.0.0.1", IMAPPort: 143,
			TLSMode: "none", Login: "x", SecretEnc: []byte("x"), SyncInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var started []task.Task
		sched := &worker.Scheduler{Accounts: s, Tasks: tasks, Interval: time.Minute, Started: func(t task.Task) { started = append(started, t) }}
		startsAt := func(after time.Duration) int {
			t.Helper()
			clock.Advance(after)
			before := len(started)
			sched.StartDue(ctx)
			return len(started) - before
		}

		if n := startsAt(0); n != 1 {
			t.Fatalf("the first look started %d syncs, want 1", n)
		}
		crash(t, ctx, tasks, clock)
		dead, err := tasks.Latest(ctx, a.ID)
		if err != nil || !task.Died(dead) {
			t.Fatalf("after dying on every attempt the task is %+v (%v), want one that died", dead, err)
		}
		if n := startsAt(4 * time.Minute); n != 0 {
			t.Fatalf("4 min after a crash-looping sync, the scheduler started %d more", n)
		}
		if n := startsAt(2 * time.Minute); n != 1 {
			t.Fatalf("past the 5 min backoff the scheduler started %d syncs, want 1", n)
		}

		crash(t, ctx, tasks, clock) // the second dead task in a row: 10 min
		if n := startsAt(9 * time.Minute); n != 0 {
			t.Fatalf("9 min after the second crash-looping sync, the scheduler started %d more", n)
		}
		// The user asks anyway: Sync now is not held back.
		now, created, err := tasks.Start(ctx, a.ID, false)
		if err != nil || !created {
			t.Fatalf("Sync now during the backoff: created %v, %v; want a new task", created, err)
		}
		tk, ok, err := tasks.Claim(ctx, "healthy")
		if err != nil || !ok || tk.ID != now.ID {
			t.Fatalf("claim: %+v %v %v", tk, ok, err)
		}
		if _, err := tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
			t.Fatal(err)
		}
		if n := startsAt(2 * time.Minute); n != 1 {
			t.Fatalf("after a success the scheduler started %d syncs, want 1 (no backoff left)", n)
		}
	})
}
