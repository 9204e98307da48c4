// Package worker is the runtime that executes sync tasks: a claim loop bounded by a concurrency
// limit, a heartbeat per running task, a reaper, and a graceful shutdown that hands running tasks
// back to the queue.
//
// A worker trusts nothing but the database. It stops a task's body the moment a heartbeat is
// refused (the task is no longer its own), when a cancel is requested, or when it has gone
// SelfFence without a successful heartbeat: by then the reaper may be about to give the task to
// someone else, and a worker that cannot prove it is alive must stop writing before that happens.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"mailsync/internal/task"
)

// Causes of a task context's cancellation, as context.Cause reports them to the body.
// ErrDispossessed is the worker's word for a heartbeat the store refused with task.ErrLeaseLost:
// the cause the body sees, not an error of the store.
var (
	ErrDispossessed    = errors.New("worker: the task is no longer ours (reaped, replaced or finished elsewhere)")
	ErrSelfFenced      = errors.New("worker: no successful heartbeat for too long; stopped writing")
	ErrCancelRequested = errors.New("cancelled by request")
	ErrShutdown        = errors.New("worker: shutting down")
	ErrMaxRunTime      = errors.New("worker: the sync ran longer than the maximum run time")
)

// Body does the work of one task. It must return soon after ctx is done, and report progress
// through run. Every write it makes to the database must be fenced by run.Lease (and then count as
// a heartbeat: call run.Beat).
type Body func(ctx context.Context, run *Run) error

// Config tunes a Worker.
type Config struct {
	// Owner names this worker in the rows it claims; unique per process.
	Owner string
	// Account, when positive, is the only account whose tasks this worker claims: the CLI's sync
	// runs its own account's task and leaves everyone else's to the servers.
	Account int64
	// Concurrency is how many tasks run at once.
	Concurrency int
	// PollInterval is how often the claim loop looks for queued tasks when nobody woke it.
	PollInterval time.Duration
	// Wakeups, when set, carries hints that a task was queued, on this instance or another one
	// (events.Bus.SubscribeQueued): each makes an idle claim loop look at once.
	Wakeups <-chan struct{}
	// ShutdownGrace is how long running bodies get to stop after shutdown starts, before their
	// tasks are handed back regardless (their late writes are fenced off by the new epoch).
	ShutdownGrace time.Duration
	// Changed, when set, is told of progress as bodies report it (at most every ProgressEvery).
	Changed       func(task.Task)
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.Uint32()&0xffff)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Worker claims queued tasks and runs them.
type Worker struct {
	tasks  *task.Manager
	body   Body
	config Config
	wake   chan struct{}
	// running holds the ids of the tasks this worker is executing now.
	running sync.Map
}

// New returns a Worker; run it with Run.
func New(tasks *task.Manager, body Body, c Config) *Worker {
	c.setDefaults()
	return &Worker{tasks: tasks, body: body, config: c, wake: make(chan struct{}, 1)}
}

// Owner is the name this worker claims tasks under.
func (w *Worker) Owner() string { return w.config.Owner }

// Runs reports whether this worker is executing the task now. A waiter in the same process trusts
// it over the task's heartbeat age: the worker proves its own task alive, or fences itself and
// stops, after which Runs is false.
func (w *Worker) Runs(taskID string) bool {
	_, ok := w.running.Load(taskID)
	return ok
}

// Wake makes the claim loop look for work now, rather than at its next poll.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run claims and executes tasks until ctx is done, then stops every running task, hands each
// back to the queue, and returns.
func (w *Worker) Run(ctx context.Context) error {
	var (
		running sync.WaitGroup
		slots   = make(chan struct{}, w.config.Concurrency)
		poll    = time.NewTicker(w.config.PollInterval)
	)
	defer poll.Stop()
	defer running.Wait()
	// A claim woken for a queued task can find nothing: the claim skips rows another session holds
	// (SKIP LOCKED on PostgreSQL), and a Sync now or an action joining the new task holds its row
	// for a moment. So a woken claim that finds nothing looks again a few times shortly after,
	// rather than leave the task to the next poll (measured by bench/actbench: 1 to 4 actions in 100
	// waited a whole poll interval on PostgreSQL).
	var (
		recheck <-chan time.Time
		tries   int
	)
	woken := func() { tries, recheck = 0, time.After(wokenRecheck[0]) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case slots <- struct{}{}:
		}
		t, ok, err := w.claim(ctx)
		if err != nil || !ok {
			<-slots
			if err != nil && ctx.Err() == nil {
				w.config.Logger.Warn("claim failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-poll.C:
			case <-recheck:
				if tries++; tries < len(wokenRecheck) {
					recheck = time.After(wokenRecheck[tries])
				} else {
					recheck = nil
				}
			case <-w.wake:
				woken()
			case <-w.config.Wakeups:
				woken()
			}
			continue
		}
		running.Go(func() {
			defer func() { <-slots }()
			w.execute(ctx, t)
		})
	}
}

// wokenRecheck is when a woken claim that found nothing looks again, after the wakeup.
var wokenRecheck = [...]time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 400 * time.Millisecond}

func (w *Worker) claim(ctx context.Context) (task.Task, bool, error) {
	if w.config.Account > 0 {
		return w.tasks.ClaimAccount(ctx, w.config.Owner, w.config.Account)
	}
	return w.tasks.Claim(ctx, w.config.Owner)
}

// execute runs one claimed task to its end. stop is the worker's lifetime: when it ends, the task
// is interrupted rather than failed.
func (w *Worker) execute(stop context.Context, t task.Task) {
	log := w.config.Logger.With("task", t.ID, "account", t.AccountID, "epoch", t.Epoch, "attempt", t.Attempt)
	log.Info("task claimed")
	w.running.Store(t.ID, struct{}{})
	defer w.running.Delete(t.ID)
	cfg := w.tasks.Config()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, cfg.MaxRunTime, ErrMaxRunTime)
	defer cancelTimeout()
	stopWatch := context.AfterFunc(stop, func() { cancel(ErrShutdown) })
	defer stopWatch()

	run := newRun(t, w.config.Changed, w.config.ProgressEvery)
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		w.heartbeat(ctx, run, cancel, cfg)
	}()

	err := w.awaitBody(ctx, stop, run, log)
	cause := context.Cause(ctx)
	cancel(nil) // stop the heartbeat; a nil cause keeps the one already set
	<-beats

	// The final write must happen even when the worker is stopping.
	final, cancelFinal := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelFinal()
	lease, progress := run.Lease(), run.Progress()
	// Each outcome is logged only once the database has it: after an outage the log must not say
	// "failed" of a task the database still shows running (the reaper settles it later).
	var (
		ferr    error
		outcome string
		attrs   []any
	)
	switch {
	case errors.Is(cause, ErrDispossessed):
		log.Warn("task stopped without writing its end", "cause", cause)
		return
	case errors.Is(cause, ErrSelfFenced):
		// Its row may be held by another session, or the database away: either way it cannot be
		// written now. A reaper re-queues the task once it is dead and its row free.
		log.Warn("task stopped without writing its end: no heartbeat succeeded within the self-fence; a reaper will re-queue it",
			"self_fence", cfg.SelfFence)
		return
	case errors.Is(cause, ErrShutdown):
		_, ferr = w.tasks.Interrupt(final, lease, progress)
		outcome = "handed back to the queue for shutdown"
	case errors.Is(cause, ErrCancelRequested):
		_, ferr = w.tasks.Finish(final, lease, task.Cancelled, progress, "cancelled by request")
		outcome = "cancelled"
	case err == nil:
		_, ferr = w.tasks.Finish(final, lease, task.Succeeded, progress, "")
		outcome, attrs = "succeeded", []any{"messages", progress.MessagesDone, "new", progress.New}
	default:
		if errors.Is(cause, ErrMaxRunTime) {
			err = ErrMaxRunTime
		}
		_, ferr = w.tasks.Finish(final, lease, task.Failed, progress, err.Error())
		outcome, attrs = "failed", []any{"err", err}
	}
	switch {
	case errors.Is(ferr, task.ErrLeaseLost):
		log.Warn("the task "+outcome+" but was no longer ours to record it", append(attrs, "record_err", ferr)...)
	case ferr != nil:
		log.Error("could not record that the task "+outcome+"; it stays running in the database until a reaper hands it on",
			append(attrs, "record_err", ferr)...)
	case outcome == "failed":
		log.Warn("task failed", attrs...)
	default:
		log.Info("task "+outcome, attrs...)
	}
}

// awaitBody runs the body and waits for it, but once the worker is stopping only for
// ShutdownGrace: a body stuck where it cannot see its context must not hold the shutdown, and
// whatever it writes later is refused, because handing the task back moves its epoch on.
func (w *Worker) awaitBody(ctx, stop context.Context, run *Run, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- w.callBody(ctx, run) }()
	select {
	case err := <-done:
		return err
	case <-stop.Done():
	}
	grace := time.NewTimer(w.config.ShutdownGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		return err
	case <-grace.C:
		log.Warn("the sync did not stop within the shutdown grace; handing its task back anyway", "grace", w.config.ShutdownGrace)
		return ErrShutdown
	}
}

// callBody runs the body, turning a panic into an error so that one bad task cannot take the
// process (and every other running sync) down.
func (w *Worker) callBody(ctx context.Context, run *Run) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.config.Logger.Error("sync panicked", "task", run.Task.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return w.body(ctx, run)
}

// urgentGap is the least time between two heartbeats that the body asked for early (a new phase,
// a stall of its server): the row says where the task is within about a second, at the cost of
// at most one write per second.
const urgentGap = time.Second

// heartbeat proves the task alive every interval (jittered, so that many workers do not beat in
// step) until ctx ends, and cancels the task when the database refuses, a cancel is requested, or
// no beat has succeeded for cfg.SelfFence. A beat comes early when the body's phase changes or its
// server stalls or resumes: a worker that then dies leaves its last whereabouts in the row, and a
// stall shows without waiting for the interval.
//
// A beat that fails (the database away, or the task's row held by another session's lock, which
// makes the store give up after a second) is tried again after a fifth of the interval, so a brief
// outage or foreign lock costs a few retries, not the task. The wait between beats never passes
// the self-fence. A beat in flight is not cut at the self-fence: the body's own batch holds the
// row while it commits, and a beat queued behind it succeeds when it ends; the store's lock wait
// bounds how far such a beat overruns (every write is fenced by epoch in the database anyway).
func (w *Worker) heartbeat(ctx context.Context, run *Run, cancel context.CancelCauseFunc, cfg task.Config) {
	wait := cfg.HeartbeatInterval
	last := time.Now()
	for {
		wait += time.Duration(rand.Int64N(int64(wait)/5+1)) - wait/10
		if fence := cfg.SelfFence - run.SinceBeat(); wait > fence {
			wait = max(fence, 0)
		}
		due := time.Now().Add(wait)
		timer := time.NewTimer(wait)
		urgent := false
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-run.urgent:
			// As soon as the gap allows, but never later than the regular beat.
			urgent = true
			if soonest := last.Add(urgentGap); soonest.Before(due) {
				timer.Reset(time.Until(soonest))
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		if run.SinceBeat() >= cfg.SelfFence {
			cancel(ErrSelfFenced)
			return
		}
		last = time.Now()
		progress := run.Progress()
		beatCtx, done := context.WithTimeout(ctx, 5*time.Second)
		// The database records the beat when the statement starts, which may be long before it
		// returns (a lock wait): count from before the call, never later than the database.
		began := time.Now()
		stop, err := w.tasks.Heartbeat(beatCtx, run.Lease(), progress)
		done()
		if err == nil && urgent {
			run.publish() // streams re-read the row, which now says it
		}
		wait = cfg.HeartbeatInterval
		switch {
		case errors.Is(err, task.ErrLeaseLost):
			cancel(ErrDispossessed)
			return
		case errors.Is(err, task.ErrBusy):
			// Its own batch commit can hold the row for a moment too; that one counts as a beat.
			w.config.Logger.Info("heartbeat waited too long for the task's row, which another database session holds; retrying",
				"task", run.Task.ID, "since_beat", run.SinceBeat().Round(time.Millisecond), "self_fence", cfg.SelfFence)
			wait = cfg.HeartbeatInterval / 5
		case err != nil:
			// A database hiccup: keep trying until the self-fence says otherwise.
			w.config.Logger.Warn("heartbeat failed", "task", run.Task.ID, "err", err)
			wait = cfg.HeartbeatInterval / 5
		case stop:
			run.beatAt(began)
			cancel(ErrCancelRequested)
			return
		default:
			run.beatAt(began)
		}
	}
}

// Run is one execution of a task, as its body sees it.
type Run struct {
	// Task is the row as it was claimed.
	Task task.Task

	changed func(task.Task)
	every   time.Duration

	// urgent asks the heartbeat loop for an early beat; one pending request stands for any number.
	urgent chan struct{}
	// publishing serializes the calls of changed, each with the progress of its moment, so that
	// whoever listens sees progress in order even when the body and the heartbeat both publish.
	publishing sync.Mutex

	mu          sync.Mutex
	progress    task.Progress
	lastBeat    time.Time
	lastChanged time.Time
	waiting     time.Time // since when the body waits on its server; zero when it does not
}

func newRun(t task.Task, changed func(task.Task), every time.Duration) *Run {
	return &Run{Task: t, changed: changed, every: every, progress: t.Progress, lastBeat: time.Now(),
		urgent: make(chan struct{}, 1)}
}

func (r *Run) beatSoon() {
	select {
	case r.urgent <- struct{}{}:
	default:
	}
}

// Waiting records that the body has been waiting on its server, with nothing received, since
// since (the zero time: no longer). Heartbeats keep going, since the worker is alive; they carry
// the wait to the task, which shows it as stalled_since. It never blocks (imapconn.Config.Stalled
// calls it from a timer).
func (r *Run) Waiting(since time.Time) {
	r.mu.Lock()
	changed := r.waiting.IsZero() != since.IsZero()
	r.waiting = since
	r.mu.Unlock()
	if changed {
		r.beatSoon()
	}
}

// Lease is the fencing token every write of the body must carry.
func (r *Run) Lease() task.Lease { return r.Task.Lease() }

// Report records the body's progress; the next heartbeat (or fenced write) stores it.
func (r *Run) Report(p task.Progress) {
	r.mu.Lock()
	newPhase := p.Phase != r.progress.Phase
	r.progress = p
	notify := r.changed != nil && time.Since(r.lastChanged) >= r.every
	if notify {
		r.lastChanged = time.Now()
	}
	r.mu.Unlock()
	if newPhase {
		r.beatSoon()
	}
	if notify {
		r.publish()
	}
}

// publish tells changed of the run's progress as it is now.
func (r *Run) publish() {
	if r.changed == nil {
		return
	}
	r.publishing.Lock()
	defer r.publishing.Unlock()
	t := r.Task
	t.Progress = r.Progress()
	r.changed(t)
}

// Progress returns the last reported progress, with how long the body has been waiting on its
// server (Waiting) if it is.
func (r *Run) Progress() task.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress
	if !r.waiting.IsZero() {
		p.Waiting = max(time.Since(r.waiting), time.Millisecond)
	}
	return p
}

// Beat records that a fenced write which began at began succeeded: the task was provably still
// ours then. The time is the write's start, not its end: the database stamps the heartbeat when
// the write's transaction begins, and the self-fence must count from no later than the database's
// own clock does, however long the write took. An older write never moves the last beat back.
func (r *Run) Beat(began time.Time) { r.beatAt(began) }

func (r *Run) beatAt(t time.Time) {
	r.mu.Lock()
	if t.After(r.lastBeat) {
		r.lastBeat = t
	}
	r.mu.Unlock()
}

// SinceBeat is the time since the last successful fenced write (local monotonic clock).
func (r *Run) SinceBeat() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.lastBeat)
}
