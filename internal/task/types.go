package task

import (
	"context"
	"errors"
	"time"
)

// State is the state of a sync task. Queued and running are active; the others are terminal and
// a terminal row never changes again. docs/lifecycle.md#states draws every move, and
// docs/lifecycle.md#transitions names the statement that makes it.
type State string

const (
	// Queued waits for a worker. Left by a worker's Claim (to running), a user's Cancel (to
	// cancelled), or the reaper or Start once it has waited QueuedTimeout (to failed).
	Queued State = "queued"
	// Running is owned by one worker under one epoch. Left by its worker's Finish (to a terminal
	// state) or Interrupt (back to queued, on shutdown), or, once the worker is silent for
	// HeartbeatTimeout, by a reap (to queued, cancelled or failed) or a Start (to failed); a reap
	// also fails a run past MaxRunTime.
	Running State = "running"
	// Succeeded is terminal: nothing moves a task out of it.
	Succeeded State = "succeeded"
	// Failed is terminal: nothing moves a task out of it.
	Failed State = "failed"
	// Cancelled is terminal: nothing moves a task out of it.
	Cancelled State = "cancelled"
)

// States lists every state, active ones first (metrics report each, even at zero).
var States = []State{Queued, Running, Succeeded, Failed, Cancelled}

// Active reports whether the state is queued or running.
func (s State) Active() bool { return s == Queued || s == Running }

// Progress is what a running sync reports. Counters only grow during a run.
type Progress struct {
	Phase         string
	FoldersTotal  int
	FoldersDone   int
	MessagesTotal int
	MessagesDone  int
	BytesDone     int64
	New           int
	Updated       int
	Deleted       int
	// Waiting is how long the run has been waiting on its IMAP server with nothing received (0:
	// it is not). Heartbeats turn it into the row's stalled_since by the database clock; it is
	// never read back (see Task.StalledSince).
	Waiting time.Duration
}

// Task is one sync task as the database last had it. Zero times stand for "never".
type Task struct {
	ID                string
	AccountID         int64
	State             State
	ForceFull         bool
	Epoch             int64
	Attempt           int
	MaxAttempts       int
	Owner             string
	CreatedAt         time.Time
	StartedAt         time.Time
	HeartbeatAt       time.Time
	FinishedAt        time.Time
	CancelRequestedAt time.Time
	Progress          Progress
	Error             string
	// StalledSince is when the running task's IMAP server went quiet, by the database clock, as
	// its worker's last heartbeat said; zero when it was not waiting.
	StalledSince time.Time
	// Deaths counts the attempts whose worker went silent and was given up on (reaped, or replaced
	// by a Start): a task that died on every attempt is a crash loop.
	Deaths int
	// ObservedAt is the database clock when the row was read: liveness is judged against it, never
	// against the clock of the machine that reads.
	ObservedAt time.Time
}

// Lease is a worker's claim on a running task. Epoch is the fencing token: every write a worker
// makes for the task names it, and the database refuses it once the epoch has moved on.
type Lease struct {
	TaskID string
	Epoch  int64
}

// Lease returns the fencing token of the task as it was read.
func (t Task) Lease() Lease { return Lease{TaskID: t.ID, Epoch: t.Epoch} }

// Attempt is one ended run of a task, as the attempt log keeps it (a database trigger writes a
// row whenever a running task leaves the running state, whatever statement moved it).
type Attempt struct {
	TaskID  string
	Epoch   int64 // the run's fencing token: unique per run of a task
	Attempt int   // the attempt counter during the run (a shutdown hands it back, so it can repeat)
	Owner   string
	// StartedAt is when the run was claimed; LastHeartbeatAt when its worker was last heard from.
	StartedAt       time.Time
	LastHeartbeatAt time.Time
	EndedAt         time.Time
	// Outcome is the task's state right after the run: a terminal state, or queued when the run
	// was handed back (shutdown, Error empty) or re-queued by a reaper (Error says why).
	Outcome      State
	Phase        string // where the run was at its last heartbeat
	MessagesDone int
	Error        string
}

// StartParams are the inputs of Store.StartTask. The durations are the lifecycle's policy (a
// Config); Now, when set, replaces the database clock (tests).
type StartParams struct {
	AccountID     int64
	ForceFull     bool
	MaxAttempts   int
	DeadAfter     time.Duration
	QueuedTimeout time.Duration
	Now           time.Time
}

// ReapParams are the inputs of Store.ReapTasks; Now as in StartParams.
type ReapParams struct {
	DeadAfter     time.Duration
	QueuedTimeout time.Duration
	MaxRunTime    time.Duration
	Now           time.Time
}

var (
	// ErrNotFound means there is no such task, or (from a claim) no queued task to take.
	ErrNotFound = errors.New("task not found")
	// ErrLeaseLost is returned by fenced writes when the task is no longer running under the
	// caller's epoch: the reaper, a cancel or another worker has taken it. The caller must stop,
	// and write nothing more.
	ErrLeaseLost = errors.New("task lease lost")
	// ErrBusy means another database session holds a lock the call needed and the call gave up
	// waiting for it, having changed nothing: try again shortly. Start returns it only when it
	// cannot even read a live task to join.
	ErrBusy = errors.New("busy: another database session holds a lock on the row; try again shortly")
)

// Store is the part of the database the lifecycle uses; package store implements it. Each method
// is one atomic compare-and-set (docs/lifecycle.md#transitions lists the guards). A method given
// a zero now uses the database clock.
type Store interface {
	StartTask(ctx context.Context, p StartParams) (t Task, created bool, err error)
	// ClaimTask returns ErrNotFound when nothing is queued.
	ClaimTask(ctx context.Context, owner string, now time.Time) (Task, error)
	ClaimAccountTask(ctx context.Context, owner string, accountID int64, now time.Time) (Task, error)
	// Heartbeat returns when a cancel was requested (zero if none), or ErrLeaseLost or ErrBusy.
	Heartbeat(ctx context.Context, l Lease, p Progress, now time.Time) (cancelRequestedAt time.Time, err error)
	FinishTask(ctx context.Context, l Lease, state State, p Progress, errMsg string, now time.Time) (Task, error)
	InterruptTask(ctx context.Context, l Lease, p Progress, now time.Time) (Task, error)
	CancelTask(ctx context.Context, id string, now time.Time) (Task, error)
	ReapTasks(ctx context.Context, p ReapParams) ([]Task, error)
	Task(ctx context.Context, id string) (Task, error)
	LatestTask(ctx context.Context, accountID int64) (Task, error)
	TaskAttempts(ctx context.Context, taskID string) ([]Attempt, error)
	RecentTasks(ctx context.Context, accountID int64, limit int) ([]Task, error)
}
