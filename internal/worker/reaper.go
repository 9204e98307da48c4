package worker

import (
	"context"
	"log/slog"
	"time"

	"mailsync/internal/task"
)

// Reaper ends or re-queues dead tasks at a fixed interval. Every instance runs one; no leader is
// needed because each reap is a single guarded statement that changes a dead task exactly once.
type Reaper struct {
	Tasks    *task.Manager
	Interval time.Duration
	Logger   *slog.Logger
	// Reaped, when set, is told of every task the reaper changed (metrics).
	Reaped func([]task.Task)
}

// Run reaps until ctx is done.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		r.reapOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Reaper) reapOnce(ctx context.Context) {
	reaped, err := r.Tasks.Reap(ctx)
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("reap failed", "err", err)
		}
		return
	}
	for _, t := range reaped {
		log.Warn("reaped a dead task", "task", t.ID, "account", t.AccountID, "state", t.State, "reason", t.Error)
	}
	if len(reaped) > 0 && r.Reaped != nil {
		r.Reaped(reaped)
	}
}
