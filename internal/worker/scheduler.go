package worker

import (
	"context"
	"log/slog"
	"time"

	"mailsync/internal/task"
)

// DueAccounts finds the accounts whose scheduled sync is due.
type DueAccounts interface {
	DueAccounts(ctx context.Context, now time.Time) ([]int64, error)
}

// Scheduler starts the scheduled syncs of accounts that have an interval. Every instance may run
// one: Start is idempotent, so two schedulers that find the same account due start one task.
type Scheduler struct {
	Accounts DueAccounts
	Tasks    *task.Manager
	Interval time.Duration // how often to look
	Logger   *slog.Logger
	// Started, when set, is told of each task a scheduled start created (to wake a worker).
	Started func(task.Task)
}

// Run looks for due accounts until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		s.StartDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// StartDue starts every due account's sync once; Run calls it every Interval.
func (s *Scheduler) StartDue(ctx context.Context) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var now time.Time
	if s.Tasks.Now != nil {
		now = s.Tasks.Now()
	}
	due, err := s.Accounts.DueAccounts(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("scheduler: cannot list due accounts", "err", err)
		}
		return
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
