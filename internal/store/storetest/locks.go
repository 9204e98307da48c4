package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// HoldRowLock opens a transaction of its own that locks the task's row (SELECT ... FOR UPDATE)
// and keeps it, as a frozen instance or an operator's forgotten session would. release rolls it
// back; it is also called when the test ends. PostgreSQL only: SQLite has no row locks.
func HoldRowLock(tb testing.TB, s *store.Store, taskID string) (release func()) {
	tb.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	var id string
	if err := tx.QueryRowContext(ctx, `SELECT id FROM sync_tasks WHERE id = $1 FOR UPDATE`, taskID).Scan(&id); err != nil {
		tx.Rollback()
		tb.Fatalf("lock task %s: %v", taskID, err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			tx.Rollback()
		}
	}
	tb.Cleanup(release)
	return release
}

// onlyPostgres skips a case about row locks on engines that have none.
func onlyPostgres(t *testing.T, dialect string) {
	t.Helper()
	if dialect != "postgres" {
		t.Skip("row locks are PostgreSQL's: SQLite has one writer, and its writers queue for it")
	}
}

// took runs fn and returns how long it ran.
func took(fn func()) time.Duration {
	began := time.Now()
	fn()
	return time.Since(began)
}

// testReaperSkipsLockedRow: a dead task whose row another session holds must not stop the reaper
// from reaping the others, nor make it wait.
func testReaperSkipsLockedRow(t *testing.T, dialect string) {
	onlyPostgres(t, dialect)
	e := newEnv(t, dialect)
	e.start(t, SeedAccount(t, e.store).ID)
	held := e.claim(t, "frozen")
	e.start(t, SeedAccount(t, e.store).ID)
	other := e.claim(t, "crashed")
	e.clock.Advance(61 * time.Second) // both dead

	release := HoldRowLock(t, e.store, held.ID)
	var reaped []task.Task
	if d := took(func() { reaped = e.reap(t) }); d > 500*time.Millisecond {
		t.Fatalf("the reap took %s beside a locked row: it waited for the lock", d)
	}
	if len(reaped) != 1 || reaped[0].ID != other.ID || reaped[0].State != task.Queued {
		t.Fatalf("reaped %+v, want only the unlocked dead task, re-queued", reaped)
	}
	wantState(t, e.get(t, held.ID), task.Running)

	release()
	reaped = e.reap(t)
	if len(reaped) != 1 || reaped[0].ID != held.ID {
		t.Fatalf("after the lock went the reap changed %+v, want the task it had skipped", reaped)
	}
}

// testStartDoesNotWaitForLockedRow: Sync now on an account whose task row another session holds
// answers within about a second, joins the live task, and never makes a second active one.
func testStartDoesNotWaitForLockedRow(t *testing.T, dialect string) {
	onlyPostgres(t, dialect)
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	live := e.claim(t, "w")
	release := HoldRowLock(t, e.store, live.ID)

	var (
		got     task.Task
		created bool
		err     error
	)
	start := func() { got, created, err = e.tasks.Start(ctx, acct.ID, false) }
	if d := took(start); d > 2*time.Second {
		t.Fatalf("Start on a locked live task took %s", d)
	}
	if err != nil || created || got.ID != live.ID || got.State != task.Running {
		t.Fatalf("Start on a locked live task: %s %s created=%v err=%v, want the live task joined", got.ID, got.State, created, err)
	}

	// Dead and locked: it can be neither joined nor replaced until the lock goes.
	e.clock.Advance(61 * time.Second)
	if d := took(start); d > 2*time.Second {
		t.Fatalf("Start on a locked dead task took %s", d)
	}
	if !errors.Is(err, task.ErrBusy) {
		t.Fatalf("Start on a locked dead task: %s created=%v err=%v, want ErrBusy", got.ID, created, err)
	}
	if n := CountTasks(t, e.store, acct.ID); n != 1 {
		t.Fatalf("%d task rows after a busy Start, want 1", n)
	}

	release()
	start()
	if err != nil || !created || got.ID == live.ID {
		t.Fatalf("Start after the lock went: %s created=%v err=%v, want a new task", got.ID, created, err)
	}
	wantState(t, e.get(t, live.ID), task.Failed)
}

// testHeartbeatFailsFastOnLockedRow: a heartbeat blocked by another session's lock gives up
// within its lock wait (or its context) with ErrBusy, not ErrLeaseLost, and writes nothing later;
// once the lock goes the lease is intact.
func testHeartbeatFailsFastOnLockedRow(t *testing.T, dialect string) {
	onlyPostgres(t, dialect)
	ctx := context.Background()
	e := newEnv(t, dialect)
	e.start(t, SeedAccount(t, e.store).ID)
	r := e.claim(t, "w")
	release := HoldRowLock(t, e.store, r.ID)

	var err error
	if d := took(func() { _, err = e.tasks.Heartbeat(ctx, r.Lease(), task.Progress{MessagesTotal: 9, MessagesDone: 1}) }); d > 2*time.Second {
		t.Fatalf("a heartbeat on a locked row took %s", d)
	}
	if !errors.Is(err, task.ErrBusy) || errors.Is(err, task.ErrLeaseLost) {
		t.Fatalf("heartbeat on a locked row: %v, want ErrBusy", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if d := took(func() { _, err = e.tasks.Heartbeat(short, r.Lease(), task.Progress{MessagesTotal: 9, MessagesDone: 2}) }); d > time.Second {
		t.Fatalf("a heartbeat with a 200 ms deadline took %s", d)
	}
	if err == nil {
		t.Fatal("a heartbeat on a locked row succeeded")
	}

	release()
	time.Sleep(300 * time.Millisecond) // time for an abandoned beat to land, if one could
	if p := e.get(t, r.ID).Progress; p.MessagesDone != 0 {
		t.Fatalf("a heartbeat that gave up was written later: %+v", p)
	}
	if _, err := e.tasks.Heartbeat(ctx, r.Lease(), task.Progress{MessagesTotal: 9, MessagesDone: 3}); err != nil {
		t.Fatalf("heartbeat after the lock went: %v", err)
	}
}

// testCancelDoesNotWaitForLockedRow: Cancel on a task whose row another session holds answers
// ErrBusy within about a second, having changed nothing; once the lock goes it cancels.
func testCancelDoesNotWaitForLockedRow(t *testing.T, dialect string) {
	onlyPostgres(t, dialect)
	ctx := context.Background()
	e := newEnv(t, dialect)
	queued := e.start(t, SeedAccount(t, e.store).ID)
	release := HoldRowLock(t, e.store, queued.ID)
	var err error
	if d := took(func() { _, err = e.tasks.Cancel(ctx, queued.ID) }); d > 2*time.Second {
		t.Fatalf("Cancel on a locked row took %s", d)
	}
	if !errors.Is(err, task.ErrBusy) {
		t.Fatalf("Cancel on a locked row: %v, want ErrBusy", err)
	}
	wantState(t, e.get(t, queued.ID), task.Queued)
	release()
	got, err := e.tasks.Cancel(ctx, queued.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, got, task.Cancelled)
}
