package store

import (
	"mailsync/internal/task"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// normalized makes the counters satisfy the table's CHECKs (done never above total, nothing
// negative), so that a late count from the server can never turn a heartbeat into an error.
func normalized(p task.Progress) task.Progress {
	p.FoldersDone = max(p.FoldersDone, 0)
	p.FoldersTotal = max(p.FoldersTotal, p.FoldersDone)
	p.MessagesDone = max(p.MessagesDone, 0)
	p.MessagesTotal = max(p.MessagesTotal, p.MessagesDone)
	p.BytesDone = max(p.BytesDone, 0)
	p.New, p.Updated, p.Deleted = max(p.New, 0), max(p.Updated, 0), max(p.Deleted, 0)
	p.Waiting = max(p.Waiting, 0)
	return p
}

// errNoTask is a missing task row: both the lifecycle's task.ErrNotFound and this package's
// ErrNotFound (the API answers 404 for any missing row alike).
var errNoTask error = noTask{}

type noTask struct{}

func (noTask) Error() string { return task.ErrNotFound.Error() }

func (noTask) Is(target error) bool { return target == task.ErrNotFound || target == ErrNotFound }

const taskColumns = `id, account_id, state, force_full, epoch, attempt, max_attempts, owner,
	created_at, started_at, heartbeat_at, finished_at, cancel_requested_at, phase,
	folders_total, folders_done, messages_total, messages_done, bytes_done,
	new_messages, updated_messages, deleted_messages, error, stalled_since, deaths, {{now}}`

type rowScanner interface{ Scan(dest ...any) error }

func scanTask(row rowScanner, extra ...any) (task.Task, error) {
	var (
		t                                             task.Task
		owner                                         sql.NullString
		created, observed                             int64
		started, heartbeat, finished, cancelRequested sql.NullInt64
		stalled                                       sql.NullInt64
	)
	dest := []any{&t.ID, &t.AccountID, &t.State, &t.ForceFull, &t.Epoch, &t.Attempt, &t.MaxAttempts, &owner,
		&created, &started, &heartbeat, &finished, &cancelRequested, &t.Progress.Phase,
		&t.Progress.FoldersTotal, &t.Progress.FoldersDone, &t.Progress.MessagesTotal, &t.Progress.MessagesDone,
		&t.Progress.BytesDone, &t.Progress.New, &t.Progress.Updated, &t.Progress.Deleted, &t.Error,
		&stalled, &t.Deaths, &observed}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return task.Task{}, err
	}
	t.Owner = owner.String
	t.CreatedAt = fromMillis(created)
	t.StartedAt = fromNullMillis(started)
	t.HeartbeatAt = fromNullMillis(heartbeat)
	t.FinishedAt = fromNullMillis(finished)
	t.CancelRequestedAt = fromNullMillis(cancelRequested)
	t.StalledSince = fromNullMillis(stalled)
	t.ObservedAt = fromMillis(observed)
	return t, nil
}

func scanTasks(rows *sql.Rows) ([]task.Task, error) {
	defer rows.Close()
	var out []task.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// StartTask returns the account's active task, creating one when there is none; created says
// which. It is idempotent under any concurrency: the partial unique index admits one active task
// per account, and the losing INSERT of a race turns into a read of the winner's row.
//
// A dead active task (running and silent for longer than DeadAfter, or queued for longer than
// QueuedTimeout) is failed first, in the same transaction, so a user is never blocked by a crashed
// worker for longer than the timeout, even with every reaper down. One whose cancel was requested
// ends cancelled instead, as a reap would end it, and its death does not count towards the crash
// backoff: the user stopped it.
//
// It never waits long for another session's lock on the account's task row (on PostgreSQL, a
// frozen instance's open transaction would otherwise hold Sync now for as long as it lives): after
// startLockWait it answers with the live task as last committed, read without a lock, or, when the
// locked row is dead or not yet committed, with task.ErrBusy.
func (s *Store) StartTask(ctx context.Context, p task.StartParams) (t task.Task, created bool, err error) {
	id := uuid.NewString()
	err = s.inTx(ctx, func(tx txn) error {
		if err := s.limitLockWait(ctx, tx, startLockWait); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `
			UPDATE sync_tasks SET finished_at = COALESCE($2, {{now}}),
				state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'failed' END,
				deaths = CASE WHEN state = 'running' AND cancel_requested_at IS NULL THEN deaths + 1 ELSE deaths END,
				error = CASE
					WHEN cancel_requested_at IS NOT NULL THEN 'cancelled; the worker had stopped sending heartbeats'
					WHEN state = 'running' THEN 'abandoned: the worker stopped sending heartbeats' || `+lastHeard+`
					ELSE 'abandoned: no worker picked the task up in time' END
			WHERE account_id = $1 AND (
				(state = 'running' AND heartbeat_at < COALESCE($2, {{now}}) - $3)
				OR (state = 'queued' AND COALESCE(heartbeat_at, created_at) < COALESCE($2, {{now}}) - $4))
			RETURNING `+taskColumns,
			p.AccountID, at(p.Now), millis(p.DeadAfter), millis(p.QueuedTimeout))
		if err != nil {
			return fmt.Errorf("fail dead task: %w", err)
		}
		dead, err := scanTasks(rows)
		if err != nil {
			return fmt.Errorf("fail dead task: %w", err)
		}
		if err := s.tasksEnded(ctx, tx, dead); err != nil {
			return fmt.Errorf("fail dead task: %w", err)
		}
		row := tx.QueryRowContext(ctx, `
			INSERT INTO sync_tasks (id, account_id, state, force_full, max_attempts, created_at)
			VALUES ($1, $2, 'queued', $3, $4, COALESCE($5, {{now}}))
			ON CONFLICT (account_id) WHERE state IN ('queued', 'running')
			DO UPDATE SET account_id = excluded.account_id
			RETURNING `+taskColumns+`, id = $1`,
			id, p.AccountID, p.ForceFull, p.MaxAttempts, at(p.Now))
		t, err = scanTask(row, &created)
		return err
	})
	if err = s.busy(err); errors.Is(err, task.ErrBusy) {
		t, created = task.Task{}, false
		t, err = s.liveTask(ctx, p, err)
	}
	if err != nil {
		return task.Task{}, false, fmt.Errorf("store: start task for account %d: %w", p.AccountID, err)
	}
	return t, created, nil
}

// startLockWait is how long StartTask waits for a row lock before it answers from what is
// committed: long enough for the ordinary holders (a heartbeat, a claim, a batch commit take
// milliseconds), short enough for a button.
const startLockWait = time.Second

// liveTask answers a StartTask whose row was locked: the account's live task as last committed.
// An MVCC read takes no lock and waits for none, and it writes nothing, so the partial unique
// index still admits one active task. busy is returned when there is no live task to give: the
// locked row is dead (and cannot be replaced while it is locked) or is not committed yet.
func (s *Store) liveTask(ctx context.Context, p task.StartParams, busy error) (task.Task, error) {
	t, err := scanTask(s.read.QueryRowContext(ctx, `
		SELECT `+taskColumns+` FROM sync_tasks
		WHERE account_id = $1 AND (
			(state = 'running' AND heartbeat_at >= COALESCE($2, {{now}}) - $3)
			OR (state = 'queued' AND COALESCE(heartbeat_at, created_at) >= COALESCE($2, {{now}}) - $4))`,
		p.AccountID, at(p.Now), millis(p.DeadAfter), millis(p.QueuedTimeout)))
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, busy
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("read the live task: %w", err)
	}
	return t, nil
}

// withLockWait runs the statement of fn so that it waits at most d for a lock: on PostgreSQL in a
// transaction of its own that sets lock_timeout, on SQLite (no row locks) directly on the writer.
func (s *Store) withLockWait(ctx context.Context, d time.Duration, fn func(q querier) error) error {
	if s.dialect.lockTimeout == nil {
		return fn(s.write)
	}
	return s.inTx(ctx, func(tx txn) error {
		if err := s.limitLockWait(ctx, tx, d); err != nil {
			return err
		}
		return fn(tx)
	})
}

// limitLockWait makes the rest of tx wait at most d for any lock, where the engine has row locks.
func (s *Store) limitLockWait(ctx context.Context, tx txn, d time.Duration) error {
	if s.dialect.lockTimeout == nil {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.dialect.lockTimeout(d)); err != nil {
		return fmt.Errorf("set lock timeout: %w", err)
	}
	return nil
}

// ClaimTask moves the oldest queued task to running under owner, with a new epoch and one more
// attempt. task.Progress starts again from zero: each run counts its own work (a resumed sync has less
// to do than the one that died), and the error goes: a running task shows no reason why a run
// before it ended (that is in the attempt log, TaskAttempts). It returns task.ErrNotFound when nothing
// is queued.
func (s *Store) ClaimTask(ctx context.Context, owner string, now time.Time) (task.Task, error) {
	return s.claimTask(ctx, owner, 0, now)
}

// ClaimAccountTask is ClaimTask restricted to one account's queued task: a worker that serves one
// account (the CLI's sync) never takes another account's work.
func (s *Store) ClaimAccountTask(ctx context.Context, owner string, accountID int64, now time.Time) (task.Task, error) {
	if accountID <= 0 {
		return task.Task{}, fmt.Errorf("store: claim task: account id %d is not an account", accountID)
	}
	return s.claimTask(ctx, owner, accountID, now)
}

// claimTask claims the oldest queued task, of accountID only when it is positive.
func (s *Store) claimTask(ctx context.Context, owner string, accountID int64, now time.Time) (task.Task, error) {
	filter, args := "", []any{owner, at(now)}
	if accountID > 0 {
		filter, args = "AND account_id = $3", append(args, accountID)
	}
	row := s.write.QueryRowContext(ctx, `
		UPDATE sync_tasks SET state = 'running', owner = $1, epoch = epoch + 1, attempt = attempt + 1,
			started_at = COALESCE($2, {{now}}), heartbeat_at = COALESCE($2, {{now}}), phase = 'starting',
			folders_total = 0, folders_done = 0, messages_total = 0, messages_done = 0, bytes_done = 0,
			new_messages = 0, updated_messages = 0, deleted_messages = 0, error = '',
			stalled_since = NULL
		WHERE id = (SELECT id FROM sync_tasks WHERE state = 'queued' `+filter+`
		            ORDER BY created_at, id LIMIT 1 `+s.dialect.skipLocked+`)
		  AND state = 'queued'
		RETURNING `+taskColumns, args...)
	t, err := scanTask(row)
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, errNoTask
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: claim task: %w", err)
	}
	return t, nil
}

// Heartbeat records that the lease holder is alive and where it is. It returns the time a cancel
// was requested (zero if none) and task.ErrLeaseLost when the lease is no longer valid.
//
// It fails fast rather than hang when another session holds the task's row: after beatLockWait
// (or sooner, when ctx ends sooner) it returns task.ErrBusy, having written nothing, and the worker
// tries again. On PostgreSQL it is a transaction of its own, so a beat its caller gave up on can
// never commit later.
func (s *Store) Heartbeat(ctx context.Context, l task.Lease, p task.Progress, now time.Time) (cancelRequestedAt time.Time, err error) {
	wait := beatLockWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline))
	}
	err = s.withLockWait(ctx, wait, func(q querier) error {
		var err error
		cancelRequestedAt, err = s.heartbeat(ctx, q, l, p, now)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("store: heartbeat task %s: %w", l.TaskID, s.busy(err))
	}
	return cancelRequestedAt, nil
}

// beatLockWait bounds a heartbeat's wait for its task's row. A sync's own batch holds the row for
// milliseconds; a longer hold is another session's, and the worker is better off trying again
// (and seeing the lock go) than waiting into its self-fence.
const beatLockWait = time.Second

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// heartbeat is the fenced statement that opens every write of a lease holder: a data batch starts
// with it, so a zombie's batch is refused before it writes anything.
//
// Counters never go down within a run: the worker's heartbeat and the syncer's batches both write
// progress, and a heartbeat that read the progress just before a batch committed newer figures
// must not put the older ones back.
func (s *Store) heartbeat(ctx context.Context, q querier, l task.Lease, p task.Progress, now time.Time) (time.Time, error) {
	p = normalized(p)
	var cancelRequested sql.NullInt64
	err := q.QueryRowContext(ctx, `
		UPDATE sync_tasks SET heartbeat_at = CASE WHEN heartbeat_at > COALESCE($3, {{now}}) THEN heartbeat_at ELSE COALESCE($3, {{now}}) END,
			phase = CASE WHEN $8 >= messages_done THEN $4 ELSE phase END,
			folders_total = CASE WHEN $5 > folders_total THEN $5 ELSE folders_total END,
			folders_done = CASE WHEN $6 > folders_done THEN $6 ELSE folders_done END,
			messages_total = CASE WHEN $7 > messages_total THEN $7 ELSE messages_total END,
			messages_done = CASE WHEN $8 > messages_done THEN $8 ELSE messages_done END,
			bytes_done = CASE WHEN $9 > bytes_done THEN $9 ELSE bytes_done END,
			new_messages = CASE WHEN $10 > new_messages THEN $10 ELSE new_messages END,
			updated_messages = CASE WHEN $11 > updated_messages THEN $11 ELSE updated_messages END,
			deleted_messages = CASE WHEN $12 > deleted_messages THEN $12 ELSE deleted_messages END,
			stalled_since = CASE WHEN $13 > 0 THEN COALESCE(stalled_since, COALESCE($3, {{now}}) - $13) END
		WHERE id = $1 AND epoch = $2 AND state = 'running'
		RETURNING cancel_requested_at`,
		l.TaskID, l.Epoch, at(now), p.Phase, p.FoldersTotal, p.FoldersDone, p.MessagesTotal, p.MessagesDone,
		p.BytesDone, p.New, p.Updated, p.Deleted, millis(p.Waiting)).Scan(&cancelRequested)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, task.ErrLeaseLost
	}
	if err != nil {
		return time.Time{}, err
	}
	return fromNullMillis(cancelRequested), nil
}

// FinishTask ends a running task in a terminal state with its final counters. A succeeded task
// has done all it counted: its total is set to what was done (messages can vanish mid-sync).
//
// It is one short transaction: the fenced UPDATE, then, only when it matched, the task's sync.*
// change. A refused finish (a stale epoch) writes nothing, change included.
func (s *Store) FinishTask(ctx context.Context, l task.Lease, state task.State, p task.Progress, errMsg string, now time.Time) (task.Task, error) {
	if state.Active() {
		return task.Task{}, fmt.Errorf("store: finish task %s: %q is not a terminal state", l.TaskID, state)
	}
	p = normalized(p)
	if state == task.Succeeded {
		p.MessagesTotal = p.MessagesDone
		p.FoldersDone = p.FoldersTotal
	}
	var t task.Task
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		t, err = scanTask(tx.QueryRowContext(ctx, `
			UPDATE sync_tasks SET state = $3, finished_at = COALESCE($4, {{now}}), heartbeat_at = CASE WHEN heartbeat_at > COALESCE($4, {{now}}) THEN heartbeat_at ELSE COALESCE($4, {{now}}) END,
				phase = $5, folders_total = $6, folders_done = $7, messages_total = $8, messages_done = $9,
				bytes_done = $10, new_messages = $11, updated_messages = $12, deleted_messages = $13, error = $14
			WHERE id = $1 AND epoch = $2 AND state = 'running'
			RETURNING `+taskColumns,
			l.TaskID, l.Epoch, state, at(now), p.Phase, p.FoldersTotal, p.FoldersDone, p.MessagesTotal, p.MessagesDone,
			p.BytesDone, p.New, p.Updated, p.Deleted, errMsg))
		if err != nil {
			return err
		}
		return s.tasksEnded(ctx, tx, []task.Task{t})
	})
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, fmt.Errorf("store: finish task %s: %w", l.TaskID, task.ErrLeaseLost)
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: finish task %s: %w", l.TaskID, err)
	}
	if s.checkpoints != nil {
		s.checkpoints.settled() // a sync's end: give the WAL's disk space back
	}
	return t, nil
}

// InterruptTask gives a running task back to the queue because its worker is shutting down: the
// epoch moves on (fencing the old run) and the attempt is handed back, so a deploy never burns a
// user's retries. task.Progress stays as the checkpoint left it.
func (s *Store) InterruptTask(ctx context.Context, l task.Lease, p task.Progress, now time.Time) (task.Task, error) {
	p = normalized(p)
	row := s.write.QueryRowContext(ctx, `
		UPDATE sync_tasks SET state = 'queued', owner = NULL, epoch = epoch + 1,
			attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END,
			heartbeat_at = COALESCE($3, {{now}}), phase = 'interrupted',
			folders_total = $4, folders_done = $5, messages_total = $6, messages_done = $7,
			bytes_done = $8, new_messages = $9, updated_messages = $10, deleted_messages = $11
		WHERE id = $1 AND epoch = $2 AND state = 'running'
		RETURNING `+taskColumns,
		l.TaskID, l.Epoch, at(now), p.FoldersTotal, p.FoldersDone, p.MessagesTotal, p.MessagesDone,
		p.BytesDone, p.New, p.Updated, p.Deleted)
	t, err := scanTask(row)
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, fmt.Errorf("store: interrupt task %s: %w", l.TaskID, task.ErrLeaseLost)
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: interrupt task %s: %w", l.TaskID, err)
	}
	return t, nil
}

// CancelTask cancels a queued task at once and flags a running one, whose worker stops at its
// next heartbeat. It returns the task as it now is; cancelling a finished task changes nothing.
// Like StartTask it waits at most startLockWait for a row another session holds, then answers
// task.ErrBusy, having changed nothing.
//
// Cancelling a queued task ends it, so the same transaction writes its sync.failed change.
func (s *Store) CancelTask(ctx context.Context, id string, now time.Time) (t task.Task, err error) {
	err = s.inTx(ctx, func(tx txn) error {
		if err := s.limitLockWait(ctx, tx, startLockWait); err != nil {
			return err
		}
		if t, err = s.cancelTask(ctx, tx, id, now); err != nil {
			return err
		}
		return s.tasksEnded(ctx, tx, []task.Task{t}) // nothing when the task runs on (still active)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return s.Task(ctx, id)
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: cancel task %s: %w", id, s.busy(err))
	}
	return t, nil
}

func (s *Store) cancelTask(ctx context.Context, q querier, id string, now time.Time) (task.Task, error) {
	row := q.QueryRowContext(ctx, `
		UPDATE sync_tasks SET
			state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
			finished_at = CASE WHEN state = 'queued' THEN COALESCE($2, {{now}}) ELSE finished_at END,
			error = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE error END,
			cancel_requested_at = COALESCE(cancel_requested_at, $2, {{now}})
		WHERE id = $1 AND state IN ('queued', 'running')
		RETURNING `+taskColumns, id, at(now))
	return scanTask(row)
}

// lastHeard is the SQL text that says where a dead task's worker was at its last heartbeat: the
// phase names the folder ("fetching INBOX"), the counters how far it had got. A task whose
// workers keep dying must say where they die, or nobody can tell the crash-looping folder or
// message from a flaky host.
const lastHeard = `'; its last heartbeat was in phase "' || phase || '", ' ||
	folders_done || ' of ' || folders_total || ' folders done, ' ||
	messages_done || ' of ' || messages_total || ' messages'`

// ReapTasks ends or re-queues every dead active task and returns the rows it changed:
//
//   - running and silent for longer than DeadAfter: back to the queue while attempts remain (the
//     epoch moves on, so the silent worker's writes are refused), cancelled if a cancel had been
//     asked for, else failed;
//   - running for longer than MaxRunTime: failed;
//   - queued for longer than QueuedTimeout: failed.
//
// Each statement re-checks the death in its own WHERE, under the row lock: a task that heartbeats
// between a reaper's look and its write is left alone, and several reapers at once change each
// dead task exactly once.
//
// A task a statement ends (failed, or cancelled) gets its sync.failed change in the same
// transaction (tasksEnded); a re-queued one gets none, since its sync is not over.
//
// A row another session holds locked is skipped, not waited for (FOR UPDATE SKIP LOCKED on
// PostgreSQL): one frozen transaction must not stop reaping for every other task. A skipped dead
// task is reaped by the first reap after its lock goes. SQLite has one writer and no row locks.
func (s *Store) ReapTasks(ctx context.Context, p task.ReapParams) ([]task.Task, error) {
	now, dead, queued, maxRun := at(p.Now), millis(p.DeadAfter), millis(p.QueuedTimeout), millis(p.MaxRunTime)
	const (
		silent    = `state = 'running' AND heartbeat_at < COALESCE($1, {{now}}) - $2`
		overLimit = `state = 'running' AND started_at < COALESCE($1, {{now}}) - $3`
	)
	// reap updates the rows matching where that no other session holds. The CTE locks its rows or
	// passes over them; the UPDATE then changes only rows it holds, re-checking where on their
	// newest version.
	reap := func(set, where string) string {
		return `WITH dead AS (SELECT id FROM sync_tasks WHERE ` + where + ` ` + s.dialect.skipLocked + `)
			UPDATE sync_tasks SET ` + set + `
			WHERE id IN (SELECT id FROM dead) AND (` + where + `)`
	}
	statements := []struct {
		sql  string
		args []any
	}{
		// A requeued task's heartbeat_at is when it went back to the queue: the queued timeout
		// counts from there.
		{reap(`state = 'queued', owner = NULL, epoch = epoch + 1, deaths = deaths + 1,
			heartbeat_at = COALESCE($1, {{now}}), error = 'the worker stopped sending heartbeats; retrying'`,
			silent+` AND NOT (`+overLimit+`) AND cancel_requested_at IS NULL AND attempt < max_attempts`),
			[]any{now, dead, maxRun}},
		{reap(`state = 'cancelled', epoch = epoch + 1, finished_at = COALESCE($1, {{now}}),
			error = 'cancelled; the worker had stopped sending heartbeats'`,
			silent+` AND cancel_requested_at IS NOT NULL`),
			[]any{now, dead}},
		{reap(`state = 'failed', epoch = epoch + 1, finished_at = COALESCE($1, {{now}}),
			deaths = CASE WHEN state = 'running' AND NOT (started_at < COALESCE($1, {{now}}) - $3) THEN deaths + 1 ELSE deaths END,
			error = CASE
				WHEN state = 'queued' THEN 'no worker picked the task up in time'
				WHEN started_at < COALESCE($1, {{now}}) - $3 THEN 'ran longer than the maximum run time'
				ELSE 'the worker stopped sending heartbeats on every attempt (' || attempt || ' of ' || max_attempts || ')' || `+lastHeard+` END`,
			`(`+silent+`) OR (`+overLimit+`)
			OR (state = 'queued' AND COALESCE(heartbeat_at, created_at) < COALESCE($1, {{now}}) - $4)`),
			[]any{now, dead, maxRun, queued}},
	}
	var reaped []task.Task
	err := s.inTx(ctx, func(tx txn) error {
		// Rows are skipped, not waited for; this bounds the waits SKIP LOCKED does not cover
		// (an index entry another transaction is inserting), and a reap that runs into one tries
		// again at its next interval.
		if err := s.limitLockWait(ctx, tx, reapLockWait); err != nil {
			return err
		}
		for _, st := range statements {
			rows, err := tx.QueryContext(ctx, st.sql+` RETURNING `+taskColumns, st.args...)
			if err != nil {
				return err
			}
			tasks, err := scanTasks(rows)
			if err != nil {
				return err
			}
			// A task this statement ended (failed, or cancelled) says so in this transaction;
			// one it put back in the queue says nothing: its sync goes on.
			if err := s.tasksEnded(ctx, tx, tasks); err != nil {
				return err
			}
			reaped = append(reaped, tasks...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: reap tasks: %w", s.busy(err))
	}
	return reaped, nil
}

// reapLockWait bounds the reaper's lock waits that SKIP LOCKED leaves (see ReapTasks).
const reapLockWait = 2 * time.Second

// Task returns one task by id.
func (s *Store) Task(ctx context.Context, id string) (task.Task, error) {
	row, err := s.queryRowPrepared(ctx, `SELECT `+taskColumns+` FROM sync_tasks WHERE id = $1`, id)
	var t task.Task
	if err == nil {
		t, err = scanTask(row)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, fmt.Errorf("store: task %s: %w", id, errNoTask)
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: task %s: %w", id, err)
	}
	return t, nil
}

// LatestTask returns the account's active task, or else its most recent one.
func (s *Store) LatestTask(ctx context.Context, accountID int64) (task.Task, error) {
	t, err := scanTask(s.read.QueryRowContext(ctx, `
		SELECT `+taskColumns+` FROM sync_tasks WHERE account_id = $1
		ORDER BY CASE WHEN state IN ('queued', 'running') THEN 0 ELSE 1 END, created_at DESC, id DESC
		LIMIT 1`, accountID))
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, fmt.Errorf("store: latest task of account %d: %w", accountID, errNoTask)
	}
	if err != nil {
		return task.Task{}, fmt.Errorf("store: latest task of account %d: %w", accountID, err)
	}
	return t, nil
}

// RecentTasks returns the account's last finished tasks, newest first, at most limit: the history
// the crash-loop backoff is decided from.
func (s *Store) RecentTasks(ctx context.Context, accountID int64, limit int) ([]task.Task, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+taskColumns+` FROM sync_tasks
		WHERE account_id = $1 AND state IN ('succeeded', 'failed', 'cancelled')
		ORDER BY created_at DESC, id DESC LIMIT $2`, accountID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: recent tasks of account %d: %w", accountID, err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("store: recent tasks of account %d: %w", accountID, err)
	}
	return tasks, nil
}

// TaskWithOwner returns one task by id and the id of the user owning its account, in one query:
// the API checks ownership on every read of a task.
func (s *Store) TaskWithOwner(ctx context.Context, id string) (task.Task, int64, error) {
	var owner int64
	row, err := s.queryRowPrepared(ctx, `SELECT `+taskColumns+`,
		(SELECT user_id FROM accounts WHERE accounts.id = sync_tasks.account_id)
		FROM sync_tasks WHERE id = $1`, id)
	var t task.Task
	if err == nil {
		t, err = scanTask(row, &owner)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return task.Task{}, 0, fmt.Errorf("store: task %s: %w", id, errNoTask)
	}
	if err != nil {
		return task.Task{}, 0, fmt.Errorf("store: task %s: %w", id, err)
	}
	return t, owner, nil
}

// ActiveTasks returns every queued or running task, oldest first.
func (s *Store) ActiveTasks(ctx context.Context) ([]task.Task, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+taskColumns+` FROM sync_tasks WHERE state IN ('queued', 'running') ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: active tasks: %w", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("store: active tasks: %w", err)
	}
	return tasks, nil
}
