package worker

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// ScheduleLister lists the accounts that sync on a schedule and have no active task, with the
// time it read them at (the database clock unless now is set).
type ScheduleLister interface {
	Schedules(ctx context.Context, now time.Time) (time.Time, []store.Schedule, error)
}

// Scheduler starts the scheduled syncs of accounts that have an interval. Every instance may run
// one: Start is idempotent, and an account's due time depends only on the database's rows, so
// schedulers that look at the same moment start one task and one that looks just after finds
// the new task and starts nothing.
//
// When to sync is NextDue's decision. The scheduler looks every Interval and, between looks,
// once more as soon as an account comes due, but never sooner than Interval/lookSteps after the
// previous look: the spread of accounts over their intervals survives as long as each due time
// is honoured within that resolution, and the database sees at most lookSteps looks per Interval.
type Scheduler struct {
	Accounts ScheduleLister
	Tasks    *task.Manager
	Interval time.Duration // how often to look at the least
	Logger   *slog.Logger
	// Started, when set, is told of each task a scheduled start created (to wake a worker).
	Started func(task.Task)
}

// lookSteps is how many times per Interval the scheduler looks at most.
const lookSteps = 10

// Run looks for due accounts until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		t.Reset(s.StartDue(ctx))
	}
}

// StartDue starts every due account's sync once and returns how long to wait before the next
// look: until the next account comes due, within [Interval/lookSteps, Interval].
func (s *Scheduler) StartDue(ctx context.Context) time.Duration {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var now time.Time
	if s.Tasks.Now != nil {
		now = s.Tasks.Now()
	}
	now, accounts, err := s.Accounts.Schedules(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("scheduler: cannot list scheduled accounts", "err", err)
		}
		return s.Interval
	}
	next := now.Add(s.Interval)
	var due []int64
	for _, a := range accounts {
		at := NextDue(a.Interval, Phase(a.AccountID, a.Interval), a.Created, a.LastTask)
		switch {
		case !at.After(now):
			due = append(due, a.AccountID)
		case at.Before(next):
			next = at
		}
	}
	for _, id := range due {
		if held(ctx, s.Tasks, id, log) {
			continue
		}
		t, created, err := s.Tasks.Start(ctx, id, false)
		if err != nil {
			log.Warn("scheduler: cannot start a sync", "account", id, "err", err)
			continue
		}
		if created {
			log.Info("scheduled sync started", "account", id, "task", t.ID)
			if s.Started != nil {
				s.Started(t)
			}
		}
	}
	return min(max(next.Sub(now), s.Interval/lookSteps), s.Interval)
}

// NextDue returns when an account's next scheduled sync is due. Each account has fixed slots, one
// every interval, offset by its phase; the next sync is due at the first slot that comes at least
// a quarter of an interval after lastTask, the creation of its latest task, or, when it never had
// one, at the first slot after created.
//
// Slots keep the period: a task is created a moment after the look that found it due, and a rule
// "due one interval after the last task" would find it a few milliseconds short at the look one
// interval later and wait a whole extra look. Measured from fixed slots, an account syncs every
// interval, each time as late as the look that finds it. The phase spreads accounts over the
// interval instead of firing them all at once (after an import, too: a new account's first sync
// waits for its slot; accounts that missed slots while no scheduler ran are due at once, and
// back on their slots from their next sync). The quarter interval lets a sync started for another reason
// (Sync now, an IDLE push) shortly before a slot stand in for it, and tolerates a look up to three
// quarters of an interval late without skipping a slot.
func NextDue(interval, phase time.Duration, created, lastTask time.Time) time.Time {
	i := max(interval.Milliseconds(), 1)
	p := phase.Milliseconds() % i
	from := created.UnixMilli() + 1 // the first slot strictly after the account was added
	if !lastTask.IsZero() {
		from = lastTask.UnixMilli() + i/4
	}
	// The first slot k*i + p at or after from.
	k := floorDiv(from-p+i-1, i)
	return time.UnixMilli(k*i + p).UTC()
}

// Phase is the account's offset within its interval: the same on every instance and in every
// run, different between accounts.
func Phase(accountID int64, interval time.Duration) time.Duration {
	i := interval.Milliseconds()
	if i <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(accountID)))
	return time.Duration(h.Sum64()%uint64(i)) * time.Millisecond
}

// floorDiv is a / b rounded towards minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// held reports whether the account's automatic syncs wait out a crash backoff (its last tasks died
// on every attempt): starting another would only crash-loop this instance again. The check
// failing holds the account too, this once: the next look tries again.
func held(ctx context.Context, tasks *task.Manager, accountID int64, log *slog.Logger) bool {
	until, err := tasks.HeldUntil(ctx, accountID)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot check the crash backoff; not starting a sync this time", "account", accountID, "err", err)
		}
		return true
	}
	if !until.IsZero() {
		log.Debug("automatic sync held back: the account's last syncs died on every attempt", "account", accountID, "until", until)
		return true
	}
	return false
}
