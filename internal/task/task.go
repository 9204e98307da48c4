// Package task is the sync-task lifecycle: Start, Claim, Heartbeat, Finish, Cancel, Reap and
// Interrupt, each one atomic compare-and-set in the database (package store holds the SQL).
//
// The invariants, enforced by the database itself (docs/lifecycle.md#invariants names the
// constraint or statement behind each):
//   - an account has at most one active (queued or running) task, so "Sync now" is idempotent;
//   - a running task has an owner and an epoch; every write of the owner names that epoch, and a
//     write under an old epoch changes nothing (fencing), so a paused or partitioned worker cannot
//     overwrite the work of the one that replaced it;
//   - a task whose worker went silent for HeartbeatTimeout is dead: the reaper re-queues it (or
//     fails it once its attempts are spent), and Start replaces it by itself even if no reaper runs;
//   - terminal rows never change.
//
// Liveness is judged by the database clock (docs/lifecycle.md#liveness). Manager.Now, when set,
// replaces it (tests).
package task

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Config is the lifecycle's timing policy.
type Config struct {
	HeartbeatInterval time.Duration // how often a running task proves it is alive
	HeartbeatTimeout  time.Duration // silent this long: dead
	SelfFence         time.Duration // a worker without a successful heartbeat this long stops writing
	ReapInterval      time.Duration // how often each instance looks for dead tasks
	QueuedTimeout     time.Duration // queued and unclaimed this long: failed
	MaxAttempts       int           // claims before a task that keeps dying is failed
	MaxRunTime        time.Duration // a run longer than this is failed
	// CrashBackoff is how long the automatic syncs (scheduled, IMAP push) of an account wait after
	// a task of it died on every attempt; it doubles with each such task in a row, up to
	// CrashBackoffMax. 0 turns the backoff off.
	CrashBackoff    time.Duration
	CrashBackoffMax time.Duration
}

// DefaultConfig is the policy mailsync ships with (docs/lifecycle.md#time-bounds explains how the
// timings relate).
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 15 * time.Second,
		HeartbeatTimeout:  60 * time.Second,
		SelfFence:         45 * time.Second,
		ReapInterval:      30 * time.Second,
		QueuedTimeout:     10 * time.Minute,
		MaxAttempts:       3,
		MaxRunTime:        2 * time.Hour,
		CrashBackoff:      5 * time.Minute,
		CrashBackoffMax:   6 * time.Hour,
	}
}

// Validate checks that the timings make sense together: a worker must heartbeat several times
// within the timeout, and fence itself before the reaper can hand its task to someone else.
func (c Config) Validate() error {
	switch {
	case c.HeartbeatInterval <= 0 || c.HeartbeatTimeout <= 0 || c.ReapInterval <= 0 || c.QueuedTimeout <= 0 || c.MaxRunTime <= 0:
		return errors.New("task: every interval and timeout must be positive")
	case c.HeartbeatInterval*2 > c.HeartbeatTimeout:
		return fmt.Errorf("task: heartbeat interval %s must be at most half the heartbeat timeout %s", c.HeartbeatInterval, c.HeartbeatTimeout)
	case c.SelfFence <= c.HeartbeatInterval || c.SelfFence >= c.HeartbeatTimeout:
		return fmt.Errorf("task: self-fence %s must lie between the heartbeat interval %s and the timeout %s", c.SelfFence, c.HeartbeatInterval, c.HeartbeatTimeout)
	case c.MaxAttempts < 1:
		return errors.New("task: max attempts must be at least 1")
	case c.CrashBackoff < 0 || c.CrashBackoffMax < 0:
		return errors.New("task: the crash backoff cannot be negative")
	case c.CrashBackoff > 0 && c.CrashBackoffMax < c.CrashBackoff:
		return fmt.Errorf("task: crash backoff max %s must be at least the crash backoff %s", c.CrashBackoffMax, c.CrashBackoff)
	}
	return nil
}

// Manager applies the lifecycle to a store.
type Manager struct {
	db     Store
	config Config
	// Now replaces the database clock when set; tests move it by hand.
	Now func() time.Time
	// Changed, when set, is told of every row a transition produced (the events package fans it
	// out). It runs on the caller's goroutine and must not block.
	Changed func(Task)
}

// NewManager returns a Manager; the config must be valid.
func NewManager(s Store, c Config) (*Manager, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Manager{db: s, config: c}, nil
}

// Config returns the policy in force.
func (m *Manager) Config() Config { return m.config }

// Clock returns the time the lifecycle's statements are judged by: Now's answer when set, else
// the zero time, which every store method reads as "use the database clock". Whatever else
// decides by time against tasks (the scheduler) asks here, so one test clock moves them all.
func (m *Manager) Clock() time.Time { return m.now() }

func (m *Manager) now() time.Time {
	if m.Now == nil {
		return time.Time{}
	}
	return m.Now()
}

func (m *Manager) changed(t Task) {
	if m.Changed != nil {
		m.Changed(t)
	}
}

// Start returns the account's live task, or a new queued one; created says which. Any number of
// concurrent calls for one account get the same task.
func (m *Manager) Start(ctx context.Context, accountID int64, forceFull bool) (Task, bool, error) {
	t, created, err := m.db.StartTask(ctx, StartParams{
		AccountID:     accountID,
		ForceFull:     forceFull,
		MaxAttempts:   m.config.MaxAttempts,
		DeadAfter:     m.config.HeartbeatTimeout,
		QueuedTimeout: m.config.QueuedTimeout,
		Now:           m.now(),
	})
	if err != nil {
		return Task{}, false, err
	}
	if created {
		m.changed(t)
	}
	return t, created, nil
}

// Claim takes the oldest queued task for owner. ok is false when nothing is queued.
func (m *Manager) Claim(ctx context.Context, owner string) (t Task, ok bool, err error) {
	return m.claimed(m.db.ClaimTask(ctx, owner, m.now()))
}

// ClaimAccount is Claim restricted to one account's task (a worker serving a single account).
func (m *Manager) ClaimAccount(ctx context.Context, owner string, accountID int64) (t Task, ok bool, err error) {
	return m.claimed(m.db.ClaimAccountTask(ctx, owner, accountID, m.now()))
}

func (m *Manager) claimed(t Task, err error) (Task, bool, error) {
	if errors.Is(err, ErrNotFound) {
		return Task{}, false, nil
	}
	if err != nil {
		return Task{}, false, err
	}
	m.changed(t)
	return t, true, nil
}

// Heartbeat proves the lease holder alive and records its progress. cancelRequested tells the
// worker to stop; ErrLeaseLost tells it the task is no longer its own.
func (m *Manager) Heartbeat(ctx context.Context, l Lease, p Progress) (cancelRequested bool, err error) {
	at, err := m.db.Heartbeat(ctx, l, p, m.now())
	if err != nil {
		return false, err
	}
	return !at.IsZero(), nil
}

// Finish ends the lease holder's task in a terminal state.
func (m *Manager) Finish(ctx context.Context, l Lease, state State, p Progress, errMsg string) (Task, error) {
	t, err := m.db.FinishTask(ctx, l, state, p, errMsg, m.now())
	if err != nil {
		return Task{}, err
	}
	m.changed(t)
	return t, nil
}

// Interrupt hands a running task back to the queue without spending an attempt (shutdown).
func (m *Manager) Interrupt(ctx context.Context, l Lease, p Progress) (Task, error) {
	t, err := m.db.InterruptTask(ctx, l, p, m.now())
	if err != nil {
		return Task{}, err
	}
	m.changed(t)
	return t, nil
}

// Cancel cancels a queued task at once, or asks a running one to stop.
func (m *Manager) Cancel(ctx context.Context, id string) (Task, error) {
	t, err := m.db.CancelTask(ctx, id, m.now())
	if err != nil {
		return Task{}, err
	}
	m.changed(t)
	return t, nil
}

// Reap ends or re-queues every dead task and returns what it changed.
func (m *Manager) Reap(ctx context.Context) ([]Task, error) {
	tasks, err := m.db.ReapTasks(ctx, ReapParams{
		DeadAfter:     m.config.HeartbeatTimeout,
		QueuedTimeout: m.config.QueuedTimeout,
		MaxRunTime:    m.config.MaxRunTime,
		Now:           m.now(),
	})
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		m.changed(t)
	}
	return tasks, nil
}

// Attempts returns the task's ended runs, oldest first: why each run before the current one ended.
func (m *Manager) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	return m.db.TaskAttempts(ctx, id)
}

// Get returns a task by id.
func (m *Manager) Get(ctx context.Context, id string) (Task, error) { return m.db.Task(ctx, id) }

// Latest returns the account's live task, or its most recent one.
func (m *Manager) Latest(ctx context.Context, accountID int64) (Task, error) {
	return m.db.LatestTask(ctx, accountID)
}

// Live reports whether the task is active and its worker (or, for a queued task, the queue) has
// been heard from within its timeout, as of the database clock when the row was read. A dead task
// stops being live the moment its timeout passes, whether or not a reaper has run yet.
func (m *Manager) Live(t Task) bool { return m.config.Live(t) }

// Live is Manager.Live under this config.
func (c Config) Live(t Task) bool {
	switch t.State {
	case Queued:
		since := t.HeartbeatAt // when a requeued task went back to the queue
		if since.IsZero() {
			since = t.CreatedAt
		}
		return t.ObservedAt.Sub(since) <= c.QueuedTimeout
	case Running:
		return t.ObservedAt.Sub(t.HeartbeatAt) <= c.HeartbeatTimeout
	default:
		return false
	}
}

// OldestHeartbeatAge is the age of the stalest heartbeat among the running tasks, as of the
// database clock when each was read (the arithmetic of Live, for the metrics and the health
// check); 0 when none runs.
func OldestHeartbeatAge(tasks []Task) time.Duration {
	var oldest time.Duration
	for _, t := range tasks {
		if t.State == Running {
			oldest = max(oldest, t.ObservedAt.Sub(t.HeartbeatAt))
		}
	}
	return oldest
}

// Percent is the share of the task's messages done, 0 to 100. A finished successful task is 100.
func Percent(t Task) float64 {
	if t.State == Succeeded {
		return 100
	}
	p := t.Progress
	if p.MessagesTotal <= 0 {
		return 0
	}
	return min(100, 100*float64(p.MessagesDone)/float64(p.MessagesTotal))
}
