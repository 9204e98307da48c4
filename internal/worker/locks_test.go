package worker_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// Another session (a frozen instance, an operator's open transaction) holds the row of a task a
// healthy worker runs. Held shorter than the self-fence, the worker's heartbeats give up after
// their lock wait and try again, and the sync goes on in the same attempt. Held longer, the worker
// fences itself and writes nothing; once the lock goes, a reaper re-queues the task and the next
// attempt finishes it. PostgreSQL only: SQLite has no row locks.
func TestForeignRowLockOnARunningTask(t *testing.T) {
	// The self-fence is longer than the store's one-second lock wait, so that a beat can give up
	// and be tried again before the worker fences itself.
	cfg := fast
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.SelfFence = 150*time.Millisecond, 2500*time.Millisecond, 2*time.Second
	cases := []struct {
		name        string
		hold        time.Duration
		wantAttempt int
		wantFence   bool
	}{
		{"shorter than the self-fence", 1300 * time.Millisecond, 1, false},
		{"longer than the self-fence", 3 * time.Second, 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, "postgres", cfg)
			s, tasks := e.store, e.tasks
			var logs instancetest.LogBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			var (
				mu      sync.Mutex
				stopped []string
			)
			say := func(line string) {
				mu.Lock()
				defer mu.Unlock()
				if strings.HasPrefix(line, "stopped") {
					stopped = append(stopped, line)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			w := worker.New(tasks, writingBody(s.CommitBatch, 60, say), worker.Config{PollInterval: 10 * time.Millisecond, Logger: log})
			reaper := &worker.Reaper{Tasks: tasks, Interval: cfg.ReapInterval, Logger: log}
			wg.Go(func() { _ = w.Run(ctx) })
			wg.Go(func() { _ = reaper.Run(ctx) })
			t.Cleanup(func() { cancel(); wg.Wait() })

			tk := e.start(t)
			e.waitProgress(t, tk.ID, 5)
			release := storetest.HoldRowLock(t, s, tk.ID)
			time.Sleep(tc.hold)
			held := e.get(t, tk.ID)
			release()

			mu.Lock()
			fenced := len(stopped) > 0
			mu.Unlock()
			if fenced != tc.wantFence {
				t.Fatalf("held %s: the worker stopped=%v (%v), want %v", tc.hold, fenced, stopped, tc.wantFence)
			}
			if held.State != task.Running {
				t.Fatalf("while its row was held the task became %s", held.State)
			}
			if !strings.Contains(logs.String(), "another database session holds; retrying") {
				t.Fatalf("no heartbeat gave up on the lock and retried; log:\n%s", logs.String())
			}
			final := e.get(t, tk.ID)
			for deadline := time.Now().Add(time.Minute); final.State != task.Succeeded; final = e.get(t, tk.ID) {
				if !final.State.Active() || time.Now().After(deadline) {
					t.Fatalf("after the lock went the task is %s (%q), want it succeeded", final.State, final.Error)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if final.Attempt != tc.wantAttempt {
				t.Fatalf("the sync succeeded at attempt %d, want %d", final.Attempt, tc.wantAttempt)
			}
			if n := storetest.CountTasks(t, s, tk.AccountID); n != 1 {
				t.Fatalf("%d tasks for the account, want 1", n)
			}
		})
	}
}

func (e env) get(t *testing.T, id string) task.Task {
	t.Helper()
	tk, err := e.tasks.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}
