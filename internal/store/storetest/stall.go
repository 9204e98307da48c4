package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailsync/internal/task"
)

// A heartbeat that says the run waits on its server records since when, by the database's clock
// (the statement's time less the wait), keeps that instant while the wait goes on, and clears it
// when the wait ends; a new run starts without it.
func testStalledSince(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	a := SeedAccount(t, e.store)
	e.start(t, a.ID)
	tk := e.claim(t, "w")
	beat := func(waiting time.Duration) task.Task {
		t.Helper()
		if _, err := e.tasks.Heartbeat(ctx, tk.Lease(), task.Progress{Phase: "fetching INBOX", Waiting: waiting}); err != nil {
			t.Fatal(err)
		}
		return e.get(t, tk.ID)
	}
	start := e.clock.Now()
	e.clock.Advance(10 * time.Second)
	if got := beat(3 * time.Second).StalledSince; !got.Equal(start.Add(7 * time.Second)) {
		t.Fatalf("stalled since %v, want 7 s after the start", got)
	}
	e.clock.Advance(2 * time.Second)
	if got := beat(5*time.Second + 30*time.Millisecond).StalledSince; !got.Equal(start.Add(7 * time.Second)) {
		t.Fatalf("a longer wait moved stalled_since to %v; want it kept", got)
	}
	if got := beat(0); !got.StalledSince.IsZero() || task.Stalled(got) {
		t.Fatalf("the server answers again but stalled_since is %v", got.StalledSince)
	}
	got := beat(time.Second)
	if !task.Stalled(got) || !strings.HasPrefix(task.Phase(got), "waiting for the server since ") {
		t.Fatalf("a stalled running task shows phase %q", task.Phase(got))
	}
	e.clock.Advance(task.DefaultConfig().HeartbeatTimeout + time.Second)
	e.reap(t)
	if again := e.claim(t, "w2"); !again.StalledSince.IsZero() {
		t.Fatalf("a new run starts stalled since %v", again.StalledSince)
	}
}

// Every attempt whose worker went silent counts as a death, through the reaper and through a
// Start that replaces a dead task; the failure says where the last heartbeat was; an ordinary
// failure counts none; RecentTasks lists finished tasks newest first.
func testDeathsCounted(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	cfg := task.DefaultConfig()
	a := SeedAccount(t, e.store)
	first := e.start(t, a.ID)
	for attempt := 1; attempt <= cfg.MaxAttempts; attempt++ {
		tk := e.claim(t, "w")
		if _, err := e.tasks.Heartbeat(ctx, tk.Lease(), task.Progress{Phase: "fetching Sent", FoldersTotal: 4, FoldersDone: 1,
			MessagesTotal: 50, MessagesDone: 20}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(cfg.HeartbeatTimeout + time.Second)
		e.reap(t)
		if got := e.get(t, first.ID); got.Deaths != attempt {
			t.Fatalf("after %d silent attempts the task counts %d deaths", attempt, got.Deaths)
		}
	}
	dead := e.get(t, first.ID)
	wantState(t, dead, task.Failed)
	want := `the worker stopped sending heartbeats on every attempt (3 of 3); its last heartbeat was in phase "fetching Sent", 1 of 4 folders done, 20 of 50 messages`
	if dead.Error != want || !task.Died(dead) {
		t.Fatalf("the crash-looping task failed with %q (died %v), want %q", dead.Error, task.Died(dead), want)
	}

	e.clock.Advance(time.Second)
	second := e.start(t, a.ID)
	tk := e.claim(t, "w")
	if _, err := e.tasks.Heartbeat(ctx, tk.Lease(), task.Progress{Phase: "flags INBOX"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(cfg.HeartbeatTimeout + time.Second)
	third := e.start(t, a.ID) // replaces the dead one without a reaper
	abandoned := e.get(t, second.ID)
	if abandoned.Deaths != 1 || !task.Died(abandoned) || !strings.Contains(abandoned.Error, `phase "flags INBOX"`) {
		t.Fatalf("the task a Start replaced: %d deaths, %q", abandoned.Deaths, abandoned.Error)
	}
	tk = e.claim(t, "w")
	if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Failed, task.Progress{}, "imap: login refused"); err != nil {
		t.Fatal(err)
	}
	recent, err := e.store.RecentTasks(ctx, a.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 3 || recent[0].ID != third.ID || recent[1].ID != second.ID || recent[2].ID != first.ID {
		t.Fatalf("recent tasks %+v, want the three, newest first", recent)
	}
	if recent[0].Deaths != 0 || task.Died(recent[0]) {
		t.Fatalf("an ordinary failure counts %d deaths", recent[0].Deaths)
	}
}

// Tasks that died on every attempt before deaths were counted are counted from their error when
// the column arrives, so an upgrade does not forget a crash loop in progress.
func testMigrationCountsOldDeaths(t *testing.T, dialect string) {
	ctx := context.Background()
	s := OpenDSN(t, DSN(t, dialect), false)
	if _, err := s.MigrateTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	a := seedV1Account(t, s)
	const ins = `INSERT INTO sync_tasks (id, account_id, state, owner, attempt, created_at, started_at, heartbeat_at, finished_at, error)
		VALUES ($1, $2, 'failed', 'w', $3, $4, 1, 1, 2, $5)`
	rows := [][]any{
		{"reaped", a.ID, 3, 1, "the worker stopped sending heartbeats on every attempt (3 of 3)"},
		{"abandoned", a.ID, 1, 2, "abandoned: the worker stopped sending heartbeats"},
		{"refused", a.ID, 1, 3, "imap: login refused"},
	}
	for _, r := range rows {
		if _, err := s.DB().ExecContext(ctx, ins, r...); err != nil {
			t.Fatalf("seed %v: %v", r[0], err)
		}
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{"reaped": 3, "abandoned": 1, "refused": 0} {
		tk, err := s.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Deaths != want || task.Died(tk) != (want > 0) {
			t.Errorf("task %s migrated with %d deaths (died %v), want %d", id, tk.Deaths, task.Died(tk), want)
		}
	}
}
