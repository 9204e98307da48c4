package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"mailsync/internal/task"
)

// DueActionLister lists the accounts with an action due and no active task.
type DueActionLister interface {
	AccountsWithDueActions(ctx context.Context, now time.Time, failedWait time.Duration) ([]int64, error)
}

// ActionStarter starts the task of every account whose actions wait with no task to apply them:
// those asked for while a task was ending, those a failed task left, and sends whose temporary
// SMTP failure held them back until now. An action's request starts a task itself; this is the
// net under it. Every instance may run one: Start is idempotent.
type ActionStarter struct {
	Actions  DueActionLister
	Tasks    *task.Manager
	Interval time.Duration // how often to look; zero: 2 s
	// FailedWait is how long an account whose last task failed is left alone; zero: 1 minute.
	// Its actions wait meanwhile (the next Sync now, scheduled sync or action starts a task).
	FailedWait time.Duration
	Logger     *slog.Logger

	once   sync.Once
	nudges chan struct{}
}

// Nudge asks for a look now, without waiting for the interval: a task has just ended, and an
// action that joined it after its last push waits for the next task (never blocks).
func (s *ActionStarter) Nudge() {
	select {
	case s.nudge() <- struct{}{}:
	default:
	}
}

func (s *ActionStarter) nudge() chan struct{} {
	s.once.Do(func() { s.nudges = make(chan struct{}, 1) })
	return s.nudges
}

// Run looks every Interval until ctx is done.
func (s *ActionStarter) Run(ctx context.Context) error {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.nudge():
		}
		s.StartDue(ctx)
	}
}

// StartDue starts the task of each account with an action due, once.
func (s *ActionStarter) StartDue(ctx context.Context) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := s.FailedWait
	if wait <= 0 {
		wait = time.Minute
	}
	accounts, err := s.Actions.AccountsWithDueActions(ctx, time.Time{}, wait)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("actions: cannot list accounts with actions due", "err", err)
		}
		return
	}
	for _, id := range accounts {
		if _, _, err := s.Tasks.Start(ctx, id, false); err != nil && !errors.Is(err, task.ErrBusy) && ctx.Err() == nil {
			log.Warn("actions: cannot start the account's task", "account", id, "err", err)
		}
	}
}
