package worker

import (
	"context"
	"log/slog"
	"time"
)

// ChangeLog is what a Pruner needs of the store.
type ChangeLog interface {
	PruneChanges(ctx context.Context, cutoff time.Time, max int) (int, error)
	// Now is the database clock: a change's age is measured on the clock that stamped it.
	Now(ctx context.Context) (time.Time, error)
}

// Pruner removes the changes older than the retention window at a fixed interval. Every
// instance runs one; no leader is needed because a prune removes a prefix of an account's log
// under its change head's lock, so two pruners at once remove each change once, and a reader
// behind the window is told its cursor is gone (store.PruneChanges).
//
// A run takes bounded time per statement: it removes at most Batch changes per call and calls
// again, after Pause, only while a call removed a full batch, so a backlog (a first prune after
// months, a burst of syncs) is worked off without ever holding the writer long.
type Pruner struct {
	Changes   ChangeLog
	Retention time.Duration
	// Interval is the time between runs (zero: 10 minutes); Batch the most changes one call
	// removes (zero: 5,000); Pause the wait between calls of one run (zero: 100 ms).
	Interval time.Duration
	Batch    int
	Pause    time.Duration
	// Now, when set, replaces the database clock (tests).
	Now    func() time.Time
	Logger *slog.Logger
	// Pruned, when set, is told how many changes each run removed (metrics).
	Pruned func(n int)
}

// Defaults of a Pruner's zero fields.
const (
	DefaultPruneInterval = 10 * time.Minute
	DefaultPruneBatch    = 5000
	DefaultPrunePause    = 100 * time.Millisecond
)

// Run prunes until ctx is done, first at once.
func (p *Pruner) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.PruneOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PruneOnce is one run: it removes every change older than the window, Batch at a time, and
// returns how many it removed. An error ends the run; the next one carries on.
func (p *Pruner) PruneOnce(ctx context.Context) int {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	batch, pause := p.Batch, p.Pause
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	if pause <= 0 {
		pause = DefaultPrunePause
	}
	var now time.Time
	if p.Now != nil {
		now = p.Now()
	} else {
		var err error
		if now, err = p.Changes.Now(ctx); err != nil {
			if ctx.Err() == nil {
				log.Warn("change log prune failed", "err", err)
			}
			return 0
		}
	}
	cutoff := now.Add(-p.Retention)
	removed, calls := 0, 0
	defer func() {
		if removed > 0 {
			log.Info("pruned the change log", "removed", removed, "older_than", cutoff, "calls", calls)
		}
		if p.Pruned != nil {
			p.Pruned(removed)
		}
	}()
	for {
		n, err := p.Changes.PruneChanges(ctx, cutoff, batch)
		calls++
		removed += n
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("change log prune failed", "err", err, "removed", removed)
			}
			return removed
		}
		if n < batch {
			return removed
		}
		select {
		case <-ctx.Done():
			return removed
		case <-time.After(pause):
		}
	}
}
