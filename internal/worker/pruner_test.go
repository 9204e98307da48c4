package worker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// countingLog counts a Pruner's calls and what each removed.
type countingLog struct {
	worker.ChangeLog
	mu    sync.Mutex
	calls []int
}

func (c *countingLog) PruneChanges(ctx context.Context, cutoff time.Time, max int) (int, error) {
	n, err := c.ChangeLog.PruneChanges(ctx, cutoff, max)
	c.mu.Lock()
	c.calls = append(c.calls, n)
	c.mu.Unlock()
	return n, err
}

func (c *countingLog) counts() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.calls...)
}

// TestPrunerRemovesOldChangesInBoundedCalls fills two accounts' logs, ages part of them past the
// retention window, and runs a Pruner with a small batch: it removes exactly the old changes, a
// batch per call, calling again only after a full batch, says what it removed, and raises each
// account's floor so that an old cursor is gone and a current one is not.
func TestPrunerRemovesOldChangesInBoundedCalls(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		s := storetest.Open(t, d)
		m, err := task.NewManager(s, task.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		a, b := storetest.SeedAccount(t, s), storetest.SeedAccount(t, s)
		storetest.SeedMessages(t, s, m, a.ID, "INBOX", 1500) // 1 folder + 1,500 messages + 1 end
		storetest.SeedMessages(t, s, m, b.ID, "INBOX", 700)  // 702 changes
		storetest.SeedMessages(t, s, m, a.ID, "Later", 10)   // 12 changes, kept
		now, err := s.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Everything but a's last 12 changes is 31 days old.
		if _, err := s.DB().Exec(`UPDATE changes SET created_at = $1 WHERE NOT (account_id = $2 AND seq > 1502)`,
			now.Add(-31*24*time.Hour).UnixMilli(), a.ID); err != nil {
			t.Fatal(err)
		}

		var logs bytes.Buffer
		c := &countingLog{ChangeLog: s}
		pruned := 0
		p := &worker.Pruner{Changes: c, Retention: 30 * 24 * time.Hour, Batch: 500, Pause: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), Pruned: func(n int) { pruned += n }}
		const old = 1502 + 702
		if n := p.PruneOnce(ctx); n != old || pruned != old {
			t.Fatalf("removed %d (told %d), want %d", n, pruned, old)
		}
		calls := c.counts()
		for i, n := range calls {
			// PruneChanges removes whole prefixes, so a call may take a little more than a batch;
			// every call but the last took at least one, and the last less.
			if last := i == len(calls)-1; last != (n < 500) {
				t.Fatalf("calls removed %v: a run goes on exactly while a call removes a full batch", calls)
			}
		}
		if len(calls) < old/500 {
			t.Fatalf("calls removed %v: more than a batch at a time", calls)
		}
		if !strings.Contains(logs.String(), "pruned the change log") || !strings.Contains(logs.String(), "removed=2204") {
			t.Errorf("log does not say what was removed:\n%s", logs.String())
		}

		for _, acct := range []struct {
			id          int64
			floor, last int64
		}{{a.ID, 1502, 1514}, {b.ID, 702, 702}} {
			head, err := s.ChangeHead(ctx, acct.id)
			if err != nil || head != (store.ChangeHead{Last: acct.last, Floor: acct.floor}) {
				t.Fatalf("account %d: head %+v %v, want floor %d last %d", acct.id, head, err, acct.floor, acct.last)
			}
			if _, err := s.Changes(ctx, acct.id, 0, 10); !errors.Is(err, changes.ErrGone) {
				t.Errorf("account %d: a cursor from 0 after the prune: %v, want gone", acct.id, err)
			}
			if rest, err := s.Changes(ctx, acct.id, acct.floor, 100); err != nil || len(rest) != int(acct.last-acct.floor) {
				t.Errorf("account %d: after the floor: %d changes, %v", acct.id, len(rest), err)
			}
		}
		// Nothing more is old: a run removes nothing, in one call, and logs nothing.
		logs.Reset()
		if n := p.PruneOnce(ctx); n != 0 || len(c.counts()) != len(calls)+1 || logs.Len() != 0 {
			t.Fatalf("second run removed %d in %d calls, logged %q", n, len(c.counts())-len(calls), logs.String())
		}
	})
}

// TestPrunerRunsAtItsInterval runs a Pruner on an injected clock: each tick prunes what has
// aged past the window since the last, and Run returns when its context ends.
func TestPrunerRunsAtItsInterval(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, "sqlite")
	m, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.SeedAccount(t, s)
	storetest.SeedMessages(t, s, m, a.ID, "INBOX", 5) // 7 changes
	clock := storetest.NewClock()
	real, err := s.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(real.Sub(clock.Now())) // the test clock starts at the database's
	var (
		mu     sync.Mutex
		pruned []int
	)
	p := &worker.Pruner{Changes: s, Retention: time.Hour, Interval: 20 * time.Millisecond, Now: clock.Now,
		Pruned: func(n int) { mu.Lock(); pruned = append(pruned, n); mu.Unlock() }}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	waitFor := func(what string, ok func([]int) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := append([]int(nil), pruned...)
			mu.Unlock()
			if ok(got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: runs removed %v", what, got)
			}
		}
	}
	waitFor("two runs inside the window", func(r []int) bool { return len(r) >= 2 && r[0] == 0 && r[1] == 0 })
	clock.Advance(2 * time.Hour)
	waitFor("a run after the window passed", func(r []int) bool { return len(r) > 0 && r[len(r)-1] == 7 })
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if head, err := s.ChangeHead(ctx, a.ID); err != nil || head.Floor != 7 {
		t.Fatalf("head %+v %v, want floor 7", head, err)
	}
}
