package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// AccountLister lists every account (userID 0).
type AccountLister interface {
	Accounts(ctx context.Context, userID int64) ([]store.Account, error)
}

// WatchFunc holds a push connection for an account and calls changed on every change the server
// reports, until ctx is done or the connection fails (syncer.Syncer.Watch).
type WatchFunc func(ctx context.Context, a store.Account, changed func()) error

// Watcher keeps one push watch per account and turns each reported change into a sync, through
// the same idempotent Start as Sync now. A change that arrives while a sync is already running may
// come after that sync has passed the folder, so one more sync follows the running one: a burst of
// new mail costs at most two syncs, never a pile of tasks. Accounts added or removed are picked up
// every Refresh.
//
// Every instance that runs a Watcher watches every account; that costs one IMAP connection per
// account per instance, and is harmless otherwise (Start is idempotent). Run it on one instance
// when that matters.
type Watcher struct {
	Accounts AccountLister
	Watch    WatchFunc
	Tasks    *task.Manager
	Refresh  time.Duration // how often the account list is read again; default 1 min
	// Retry is the first wait after a watch fails; it doubles up to MaxRetry. Defaults 5 s, 5 min.
	Retry, MaxRetry time.Duration
	Logger          *slog.Logger
	// Started, when set, is told of each task a change created (to wake a worker).
	Started func(task.Task)
	// Poll is how often a follow-up looks whether the running sync has ended; default 1 s.
	Poll time.Duration
}

// Run watches until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	w.setDefaults()
	watching := map[int64]context.CancelFunc{}
	defer func() {
		for _, stop := range watching {
			stop()
		}
	}()
	t := time.NewTicker(w.Refresh)
	defer t.Stop()
	for {
		accounts, err := w.Accounts.Accounts(ctx, 0)
		if err != nil && ctx.Err() == nil {
			w.Logger.Warn("watcher: cannot list accounts", "err", err)
		}
		if err == nil {
			current := make(map[int64]bool, len(accounts))
			for _, a := range accounts {
				if a.ReauthRequired() {
					continue // nothing to sign in with until its owner does again: stop watching it
				}
				current[a.ID] = true
				if _, ok := watching[a.ID]; !ok {
					actx, stop := context.WithCancel(ctx)
					watching[a.ID] = stop
					go w.watch(actx, a)
				}
			}
			for id, stop := range watching {
				if !current[id] {
					stop()
					delete(watching, id)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *Watcher) setDefaults() {
	if w.Refresh <= 0 {
		w.Refresh = time.Minute
	}
	if w.Retry <= 0 {
		w.Retry = 5 * time.Second
	}
	if w.MaxRetry <= 0 {
		w.MaxRetry = 5 * time.Minute
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Poll <= 0 {
		w.Poll = time.Second
	}
}

// watch keeps one account's watch up, waiting longer after each failure that came quickly.
func (w *Watcher) watch(ctx context.Context, a store.Account) {
	log := w.Logger.With("account", a.ID)
	var following atomic.Bool // a follow-up sync is already waiting for the running one
	changed := func() {
		t, created := w.start(ctx, a.ID, log)
		if created || t.State != task.Running || !following.CompareAndSwap(false, true) {
			return
		}
		go func() {
			defer following.Store(false)
			w.after(ctx, t, log)
		}()
	}
	wait := w.Retry
	for {
		began := time.Now()
		err := w.Watch(ctx, a, changed)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > w.MaxRetry {
			wait = w.Retry // it had been working for a while: start the backoff over
		}
		log.Warn("watcher: push connection lost; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, w.MaxRetry)
	}
}

func (w *Watcher) start(ctx context.Context, accountID int64, log *slog.Logger) (task.Task, bool) {
	if held(ctx, w.Tasks, accountID, log) {
		return task.Task{}, false
	}
	t, created, err := w.Tasks.Start(ctx, accountID, false)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("watcher: cannot start a sync", "err", err)
		}
		return task.Task{}, false
	}
	if created {
		log.Info("change pushed by the server: sync started", "task", t.ID)
		if w.Started != nil {
			w.Started(t)
		}
	}
	return t, created
}

// after waits for the running task t to end, then starts one more sync of its account.
func (w *Watcher) after(ctx context.Context, t task.Task, log *slog.Logger) {
	tick := time.NewTicker(w.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur, err := w.Tasks.Get(ctx, t.ID)
		if err != nil || cur.State.Active() {
			continue
		}
		w.start(ctx, t.AccountID, log)
		return
	}
}
