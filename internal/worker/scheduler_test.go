package worker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

func TestNextDue(t *testing.T) {
	const interval, phase = time.Minute, 10 * time.Second
	b := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // a multiple of the interval: slots are b+10s, b+70s, ...
	at := func(d time.Duration) time.Time { return b.Add(d) }
	for _, c := range []struct {
		name          string
		interval      time.Duration
		phase         time.Duration
		created, last time.Time
		want          time.Time
	}{
		{"never synced: the first slot after the account was added", interval, phase, at(0), time.Time{}, at(10 * time.Second)},
		{"added exactly on a slot: the next one", interval, phase, at(10 * time.Second), time.Time{}, at(70 * time.Second)},
		{"a task a few ms after its slot: the next slot, not a look later", interval, phase, at(0), at(10*time.Second + 5*time.Millisecond), at(70 * time.Second)},
		{"a task on its slot: the next slot", interval, phase, at(0), at(10 * time.Second), at(70 * time.Second)},
		{"a task half an interval late still counts for its slot", interval, phase, at(0), at(40 * time.Second), at(70 * time.Second)},
		{"a task less than a quarter interval before a slot stands in for it", interval, phase, at(0), at(60 * time.Second), at(130 * time.Second)},
		{"a task more than a quarter interval before a slot does not", interval, phase, at(0), at(50 * time.Second), at(70 * time.Second)},
		{"a phase past the interval wraps", interval, 70 * time.Second, at(0), at(10*time.Second + time.Millisecond), at(70 * time.Second)},
		{"no phase: slots on multiples of the interval", 30 * time.Second, 0, at(0), at(time.Millisecond), at(30 * time.Second)},
		{"a task long ago: the first slot after it, even if past", interval, phase, at(0), at(-time.Hour), at(-time.Hour + 10*time.Second + interval)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := worker.NextDue(c.interval, c.phase, c.created, c.last); !got.Equal(c.want) {
				t.Errorf("NextDue = %s, want %s", got.Sub(b), c.want.Sub(b))
			}
		})
	}
}

func TestPhaseIsStableAndWithinTheInterval(t *testing.T) {
	for id := int64(1); id < 1000; id++ {
		p := worker.Phase(id, time.Minute)
		if p < 0 || p >= time.Minute || p != worker.Phase(id, time.Minute) {
			t.Fatalf("account %d: phase %s (again %s), want a fixed value in [0, 1m)", id, p, worker.Phase(id, time.Minute))
		}
	}
}

// lookDelay is how long after a look its tasks are created, as in a real scheduler: the look
// reads the rows, then Start creates each task a moment later.
const lookDelay = 5 * time.Millisecond

// schedEnv is a store, a hand-moved clock, and schedulers that look through it.
type schedEnv struct {
	t      *testing.T
	store  *store.Store
	tasks  *task.Manager
	clock  *storetest.Clock
	user   int64
	starts map[int64][]time.Time // the creation of every scheduled task, per account
}

// slowLook is the store as the scheduler sees it, with the delay of a real look.
type slowLook struct {
	*store.Store
	clock *storetest.Clock
}

func (l slowLook) Schedules(ctx context.Context, now time.Time) (time.Time, []store.Schedule, error) {
	at, s, err := l.Store.Schedules(ctx, now)
	l.clock.Advance(lookDelay)
	return at, s, err
}

func newSchedEnv(t *testing.T, dialect string) *schedEnv {
	t.Helper()
	s := storetest.Open(t, dialect)
	tasks, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &schedEnv{t: t, store: s, tasks: tasks, clock: storetest.NewClock(), starts: map[int64][]time.Time{}}
	tasks.Now = e.clock.Now
	u, err := s.CreateUser(context.Background(), "sched@example.test", "x", false)
	if err != nil {
		t.Fatal(err)
	}
	e.user = u.ID
	return e
}

// scheduler returns a scheduler that looks at least every tick and records what it starts.
func (e *schedEnv) scheduler(tick time.Duration) *worker.Scheduler {
	return &worker.Scheduler{Accounts: slowLook{e.store, e.clock}, Tasks: e.tasks, Interval: tick,
		Started: func(t task.Task) { e.starts[t.AccountID] = append(e.starts[t.AccountID], t.CreatedAt) }}
}

func (e *schedEnv) addAccount(name string, every time.Duration) store.Account {
	e.t.Helper()
	a, err := e.store.CreateAccount(context.Background(), store.Account{UserID: e.user, Name: name, IMAPHost: "127.0.0.1",
		IMAPPort: 143, TLSMode: "none", Login: "x", SecretEnc: []byte("x"), SyncInterval: every, CreatedAt: e.clock.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// finishQueued runs every queued sync to success at once: the quickest syncs, which give a
// scheduler the most chances to start one twice.
func (e *schedEnv) finishQueued() {
	e.t.Helper()
	ctx := context.Background()
	for {
		tk, ok, err := e.tasks.Claim(ctx, "w")
		if err != nil {
			e.t.Fatal(err)
		}
		if !ok {
			return
		}
		if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
			e.t.Fatal(err)
		}
	}
}

// runFor runs the schedulers as Run does, taking turns, for d of the clock: each looks, the
// syncs it started run, and the clock moves on by the wait it asked for.
func (e *schedEnv) runFor(d time.Duration, scheds ...*worker.Scheduler) {
	e.t.Helper()
	end := e.clock.Now().Add(d)
	for i := 0; e.clock.Now().Before(end); i++ {
		wait := scheds[i%len(scheds)].StartDue(context.Background())
		e.finishQueued()
		if wait <= 0 {
			e.t.Fatalf("the scheduler asked to look again in %s", wait)
		}
		e.clock.Advance(wait)
	}
}

// TestScheduledSyncsKeepTheirInterval: with intervals equal to the scheduler's tick and
// multiples of it, every account syncs once per interval, each period within one lookSteps'
// fraction of the tick of the interval (well within the tick). A rule "due one interval after the
// last task" synced them every interval plus a tick.
func TestScheduledSyncsKeepTheirInterval(t *testing.T) {
	const tick = 30 * time.Second
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newSchedEnv(t, d)
		intervals := []time.Duration{tick, 2 * tick, 3 * tick}
		var accounts []store.Account
		for i, every := range intervals {
			for j := range 2 { // two phases per interval
				accounts = append(accounts, e.addAccount(fmt.Sprintf("a%d-%d", i, j), every))
			}
		}
		const periods = 3
		e.runFor(periods*intervals[len(intervals)-1]+tick, e.scheduler(tick))
		for _, a := range accounts {
			starts := e.starts[a.ID]
			if want := int(periods*intervals[len(intervals)-1]/a.SyncInterval) - 1; len(starts) < want {
				t.Errorf("account every %s: %d scheduled syncs, want at least %d", a.SyncInterval, len(starts), want)
			}
			for k := 1; k < len(starts); k++ {
				period := starts[k].Sub(starts[k-1])
				if diff := (period - a.SyncInterval).Abs(); diff > tick/10+2*lookDelay {
					t.Errorf("account every %s: period %d lasted %s (off by %s; the tick is %s)", a.SyncInterval, k, period, diff, tick)
				}
			}
		}
	})
}

// TestFirstScheduledSyncsSpreadOverTheInterval: accounts added at one moment do not all sync at
// the next look, but each at its phase over the following interval.
func TestFirstScheduledSyncsSpreadOverTheInterval(t *testing.T) {
	const (
		n        = 50
		interval = 5 * time.Minute
		tick     = time.Minute
		parts    = 5
	)
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newSchedEnv(t, d)
		t0 := e.clock.Now()
		for i := range n {
			e.addAccount(fmt.Sprintf("a%d", i), interval)
		}
		e.runFor(interval, e.scheduler(tick))
		counts := make([]int, parts)
		var looks []time.Time
		for id, starts := range e.starts {
			if len(starts) != 1 {
				t.Fatalf("account %d: %d scheduled syncs in its first interval, want 1", id, len(starts))
			}
			since := starts[0].Sub(t0)
			if since <= 0 || since > interval+tick/10+lookDelay {
				t.Fatalf("account %d: first sync %s after it was added, want within the interval", id, since)
			}
			counts[min(int(since*parts/interval), parts-1)]++
			if !slices.ContainsFunc(looks, starts[0].Equal) {
				looks = append(looks, starts[0])
			}
		}
		if len(e.starts) != n {
			t.Fatalf("%d of %d accounts had a scheduled sync in their first interval", len(e.starts), n)
		}
		for i, c := range counts {
			if c == 0 || c > 2*n/parts {
				t.Errorf("part %d of the interval started %d of %d syncs (all: %v), want 1..%d", i, c, n, counts, 2*n/parts)
			}
		}
		if len(looks) < parts*3 {
			t.Errorf("the %d syncs started at only %d moments, want at least %d", n, len(looks), parts*3)
		}
		t.Logf("first syncs per fifth of the interval: %v; at %d moments", counts, len(looks))
	})
}

// TestSchedulersOfTwoInstancesStartOneSyncPerSlot: two instances' schedulers looking in turn, with
// syncs that end at once, start each account once per interval.
func TestSchedulersOfTwoInstancesStartOneSyncPerSlot(t *testing.T) {
	const tick, interval = 30 * time.Second, time.Minute
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newSchedEnv(t, d)
		var accounts []store.Account
		for i := range 5 {
			accounts = append(accounts, e.addAccount(fmt.Sprintf("a%d", i), interval))
		}
		e.runFor(5*interval, e.scheduler(tick), e.scheduler(tick/2))
		for _, a := range accounts {
			if n := len(e.starts[a.ID]); n < 4 || n > 5 {
				t.Errorf("account %d: %d scheduled syncs in 5 intervals, want 4 or 5", a.ID, n)
			}
		}
	})
}

func TestSchedulerStartsDueAccountsOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newSchedEnv(t, d)
		hourly := e.addAccount("hourly", time.Hour)
		e.addAccount("manual", 0)
		sched := e.scheduler(time.Minute)
		due := worker.NextDue(time.Hour, worker.Phase(hourly.ID, time.Hour), hourly.CreatedAt, time.Time{})

		e.clock.Advance(due.Sub(e.clock.Now()) - time.Second)
		sched.StartDue(ctx)
		if len(e.starts) != 0 {
			t.Fatalf("a second before its slot, started %v", e.starts)
		}
		e.clock.Advance(time.Second)
		sched.StartDue(ctx)
		if len(e.starts) != 1 || len(e.starts[hourly.ID]) != 1 {
			t.Fatalf("at its slot, started %v; want one task for the hourly account", e.starts)
		}
		sched.StartDue(ctx) // the task is still active: nothing new
		e.finishQueued()
		e.clock.Advance(59 * time.Minute)
		sched.StartDue(ctx)
		if n := len(e.starts[hourly.ID]); n != 1 {
			t.Fatalf("a sync was started before the interval passed: %d", n)
		}
		e.clock.Advance(2 * time.Minute)
		sched.StartDue(ctx)
		if n := len(e.starts[hourly.ID]); n != 2 || len(e.starts) != 1 {
			t.Fatalf("after the interval %d syncs were started (%v), want 2, all for the hourly account", n, e.starts)
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
