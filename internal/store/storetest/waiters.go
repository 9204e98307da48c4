package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailsync/internal/task"
)

// testClaimAccount: a worker serving one account takes that account's task even when another
// account's is older, and leaves the other one queued.
func testClaimAccount(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	other, mine, idle := SeedAccount(t, e.store), SeedAccount(t, e.store), SeedAccount(t, e.store)
	theirs := e.start(t, other.ID)
	e.clock.Advance(time.Second)
	ours := e.start(t, mine.ID)

	got, ok, err := e.tasks.ClaimAccount(ctx, "cli", mine.ID)
	if err != nil || !ok {
		t.Fatalf("claim of the account's task: ok=%v err=%v", ok, err)
	}
	if got.ID != ours.ID {
		t.Fatalf("the account's claim took %s (account %d), want its own task %s", got.ID, got.AccountID, ours.ID)
	}
	if _, ok, err := e.tasks.ClaimAccount(ctx, "cli", idle.ID); ok || err != nil {
		t.Fatalf("claim for an account with nothing queued: ok=%v err=%v", ok, err)
	}
	if _, ok, _ := e.tasks.ClaimAccount(ctx, "cli", mine.ID); ok {
		t.Fatal("the account's running task was claimed twice")
	}
	wantState(t, e.get(t, theirs.ID), task.Queued)
	if any := e.claim(t, "server"); any.ID != theirs.ID {
		t.Fatalf("an unfiltered claim took %s, want the other account's %s", any.ID, theirs.ID)
	}
}

// testAttemptLog: a claim clears the error a reaper left, and every ended run is in the attempt
// log with how it ended, whichever statement ended it.
func testAttemptLog(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	tk := e.start(t, acct.ID)

	first := e.claim(t, "crashed-worker")
	if _, err := e.tasks.Heartbeat(ctx, first.Lease(), task.Progress{Phase: "fetching INBOX", MessagesTotal: 50, MessagesDone: 20}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(61 * time.Second)
	e.reap(t)
	requeued := e.get(t, tk.ID)
	wantState(t, requeued, task.Queued)
	if !strings.Contains(requeued.Error, "retrying") {
		t.Fatalf("a re-queued task says %q, want why it is retried", requeued.Error)
	}

	second := e.claim(t, "second-worker")
	if second.Error != "" || e.get(t, tk.ID).Error != "" {
		t.Fatalf("the running retry still carries the error %q", second.Error)
	}
	if _, err := e.tasks.Interrupt(ctx, second.Lease(), task.Progress{Phase: "fetching Sent"}); err != nil {
		t.Fatal(err)
	}
	third := e.claim(t, "third-worker")
	if _, err := e.tasks.Finish(ctx, third.Lease(), task.Failed, task.Progress{}, "IMAP: connection refused"); err != nil {
		t.Fatal(err)
	}

	attempts, err := e.tasks.Attempts(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		owner   string
		outcome task.State
		error   string
		phase   string
	}{
		{"crashed-worker", task.Queued, "stopped sending heartbeats", "fetching INBOX"},
		{"second-worker", task.Queued, "", "starting"},
		{"third-worker", task.Failed, "IMAP: connection refused", "starting"},
	}
	if len(attempts) != len(want) {
		t.Fatalf("%d attempts logged, want %d: %+v", len(attempts), len(want), attempts)
	}
	for i, w := range want {
		a := attempts[i]
		if a.Owner != w.owner || a.Outcome != w.outcome || a.Phase != w.phase ||
			(w.error == "") != (a.Error == "") || !strings.Contains(a.Error, w.error) {
			t.Errorf("attempt %d is %+v, want owner %s, outcome %s, phase %q, error %q", i, a, w.owner, w.outcome, w.phase, w.error)
		}
		if a.EndedAt.IsZero() || a.StartedAt.IsZero() || a.EndedAt.Before(a.StartedAt) {
			t.Errorf("attempt %d times: started %v, ended %v", i, a.StartedAt, a.EndedAt)
		}
	}
	if attempts[0].MessagesDone != 20 || attempts[0].Attempt != 1 || !attempts[0].LastHeartbeatAt.Before(attempts[0].EndedAt) {
		t.Errorf("the dead run is logged as %+v, want 20 messages done, attempt 1, silent before it ended", attempts[0])
	}

	// A run Start abandons is logged too; deleting the account takes the log with its tasks.
	other := SeedAccount(t, e.store)
	e.start(t, other.ID)
	dead := e.claim(t, "dies")
	e.clock.Advance(61 * time.Second)
	if _, created, err := e.tasks.Start(ctx, other.ID, false); err != nil || !created {
		t.Fatalf("start over a dead task: created=%v err=%v", created, err)
	}
	if got, err := e.tasks.Attempts(ctx, dead.ID); err != nil || len(got) != 1 || got[0].Outcome != task.Failed || !strings.HasPrefix(got[0].Error, "abandoned") {
		t.Fatalf("the abandoned run is logged as %+v (%v)", got, err)
	}
	if err := e.store.DeleteAccount(ctx, acct.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.tasks.Attempts(ctx, tk.ID); err != nil || len(got) != 0 {
		t.Fatalf("after the account's deletion its attempts are %+v (%v)", got, err)
	}
}

// testFollow runs on the database clock with a short timeout: what a waiter follows once its task
// is live, dead, dead for the last time, abandoned or simply over.
func testFollow(t *testing.T, dialect string) {
	ctx := context.Background()
	s := Open(t, dialect)
	cfg := task.Config{
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: 1500 * time.Millisecond,
		SelfFence: time.Second, ReapInterval: time.Hour, QueuedTimeout: time.Hour,
		MaxAttempts: 2, MaxRunTime: time.Hour,
	}
	m, err := task.NewManager(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	startAndClaim := func(accountID int64) task.Task {
		t.Helper()
		if _, _, err := m.Start(ctx, accountID, false); err != nil {
			t.Fatal(err)
		}
		tk, ok, err := m.ClaimAccount(ctx, "w", accountID)
		if err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		return tk
	}
	follow := func(tk task.Task) task.Task {
		t.Helper()
		cur, err := m.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		next, err := m.Follow(ctx, cur)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	// lastTry's first run dies and a reaper re-queues it; its second run is claimed.
	lastTry := startAndClaim(SeedAccount(t, s).ID)
	time.Sleep(cfg.HeartbeatTimeout + 100*time.Millisecond)
	if _, err := m.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.ClaimAccount(ctx, "w", lastTry.AccountID); !ok || err != nil {
		t.Fatalf("second claim: %v %v", ok, err)
	}

	live := startAndClaim(SeedAccount(t, s).ID)
	crashed := startAndClaim(SeedAccount(t, s).ID)
	abandonedAcct := SeedAccount(t, s)
	abandoned := startAndClaim(abandonedAcct.ID)
	finished := startAndClaim(SeedAccount(t, s).ID)
	if _, err := m.Finish(ctx, finished.Lease(), task.Failed, task.Progress{}, "IMAP says no"); err != nil {
		t.Fatal(err)
	}
	beat := func() {
		t.Helper()
		if _, err := m.Heartbeat(ctx, live.Lease(), task.Progress{}); err != nil {
			t.Fatal(err)
		}
	}
	beat()
	if got := follow(live); got.ID != live.ID || got.State != task.Running {
		t.Fatalf("a live task is followed as %s %s", got.ID, got.State)
	}
	// Every run but live's goes silent past the timeout.
	deadline := time.Now().Add(cfg.HeartbeatTimeout + 100*time.Millisecond)
	for time.Now().Before(deadline) {
		beat()
		time.Sleep(cfg.HeartbeatInterval)
	}
	replacement, created, err := m.Start(ctx, abandonedAcct.ID, false)
	if err != nil || !created {
		t.Fatalf("start over the dead task: created=%v err=%v", created, err)
	}

	if got := follow(crashed); got.ID != crashed.ID || got.State != task.Queued || !m.Live(got) {
		t.Errorf("a dead task with attempts left is followed as %s %s live=%v, want itself queued again", got.ID, got.State, m.Live(got))
	}
	if got := follow(lastTry); got.ID != lastTry.ID || got.State != task.Failed {
		t.Errorf("a task dead on its last attempt is followed as %s %s, want itself failed", got.ID, got.State)
	}
	if got := follow(abandoned); got.ID != replacement.ID {
		t.Errorf("an abandoned task is followed as %s %s, want its replacement %s", got.ID, got.State, replacement.ID)
	}
	if got := follow(finished); got.ID != finished.ID || got.State != task.Failed {
		t.Errorf("a task that failed on its own is followed as %s %s", got.ID, got.State)
	}
	beat()
	if got := follow(live); got.ID != live.ID || got.State != task.Running {
		t.Errorf("the live task was touched: %s %s", got.ID, got.State)
	}
}
