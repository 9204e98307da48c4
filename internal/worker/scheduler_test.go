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
