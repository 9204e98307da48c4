package worker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// fakePush is a push server under the test's control: push() reports a change on every open
// watch; failing makes the next watches fail at once.
type fakePush struct {
	mu      sync.Mutex
	open    map[int64]func()
	opened  atomic.Int32
	failing atomic.Bool
}

func (f *fakePush) watch(ctx context.Context, a store.Account, changed func()) error {
	f.opened.Add(1)
	if f.failing.Load() {
		return errors.New("connection refused")
	}
	f.mu.Lock()
	f.open[a.ID] = changed
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	delete(f.open, a.ID)
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fakePush) push(t *testing.T, accountID int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		changed := f.open[accountID]
		f.mu.Unlock()
		if changed != nil {
			changed()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no watch open for account %d", accountID)
}

func (f *fakePush) watching(accountID int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open[accountID] != nil
}

func TestWatcherTurnsPushesIntoSyncs(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		a := storetest.SeedAccount(t, e.store)
		push := &fakePush{open: map[int64]func(){}}
		var started atomic.Int32
		w := &worker.Watcher{Accounts: e.store, Watch: push.watch, Tasks: e.tasks,
			Refresh: 50 * time.Millisecond, Retry: 10 * time.Millisecond, MaxRetry: 50 * time.Millisecond,
			Poll: 10 * time.Millisecond, Started: func(task.Task) { started.Add(1) }}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { w.Run(wctx) })
		t.Cleanup(func() { stop(); wg.Wait() })

		// A push starts a sync.
		push.push(t, a.ID)
		first, err := e.tasks.Latest(ctx, a.ID)
		if err != nil || first.State != task.Queued || started.Load() != 1 {
			t.Fatalf("after a push: %+v %v, started %d", first, err, started.Load())
		}

		// Pushes while that sync runs: one more sync follows it, not one per push.
		run, ok, err := e.tasks.Claim(ctx, "w")
		if err != nil || !ok {
			t.Fatal(err)
		}
		for range 5 {
			push.push(t, a.ID)
		}
		time.Sleep(50 * time.Millisecond)
		if n := storetest.CountTasks(t, e.store, a.ID); n != 1 {
			t.Fatalf("%d tasks while the first still runs, want 1", n)
		}
		if _, err := e.tasks.Finish(ctx, run.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for storetest.CountTasks(t, e.store, a.ID) != 2 {
			if time.Now().After(deadline) {
				t.Fatal("no follow-up sync after the running one ended")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		if n := storetest.CountTasks(t, e.store, a.ID); n != 2 {
			t.Fatalf("%d tasks after five pushes during one sync, want 2", n)
		}

		// A failing push connection is retried; a deleted account stops being watched.
		push.failing.Store(true)
		before := push.opened.Load()
		other := storetest.SeedAccount(t, e.store)
		time.Sleep(200 * time.Millisecond)
		if push.opened.Load()-before < 3 {
			t.Fatalf("a failing watch was opened %d times in 200 ms, want retries", push.opened.Load()-before)
		}
		push.failing.Store(false)
		push.push(t, other.ID)
		if err := e.store.DeleteAccount(ctx, other.ID); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(5 * time.Second)
		for push.watching(other.ID) {
			if time.Now().After(deadline) {
				t.Fatal("a deleted account is still watched")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// A push for an account whose last sync died on every attempt starts nothing until the crash
// backoff has passed.
func TestWatcherHoldsAnAccountWhoseSyncsDie(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		clock := storetest.NewClock()
		e.tasks.Now = clock.Now
		a := storetest.SeedAccount(t, e.store)
		if _, _, err := e.tasks.Start(ctx, a.ID, false); err != nil {
			t.Fatal(err)
		}
		crash(t, ctx, e.tasks, clock)
		push := &fakePush{open: map[int64]func(){}}
		var started atomic.Int32
		w := &worker.Watcher{Accounts: e.store, Watch: push.watch, Tasks: e.tasks, Refresh: 50 * time.Millisecond,
			Poll: 10 * time.Millisecond, Started: func(task.Task) { started.Add(1) }}
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { w.Run(wctx) })
		t.Cleanup(func() { stop(); wg.Wait() })

		clock.Advance(fast.CrashBackoff - time.Minute)
		push.push(t, a.ID)
		if n := storetest.CountTasks(t, e.store, a.ID); n != 1 || started.Load() != 0 {
			t.Fatalf("a push during the crash backoff started a sync (%d tasks)", n)
		}
		clock.Advance(2 * time.Minute)
		push.push(t, a.ID)
		if n := storetest.CountTasks(t, e.store, a.ID); n != 2 || started.Load() != 1 {
			t.Fatalf("a push after the crash backoff: %d tasks, %d started; want a new sync", n, started.Load())
		}
	})
}
