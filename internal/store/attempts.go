package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TaskAttempt is one ended run of a task, as the attempt log keeps it (migration 00004: a trigger
// writes a row whenever a running task leaves the running state, whatever statement moved it).
type TaskAttempt struct {
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
	Outcome      TaskState
	Phase        string // where the run was at its last heartbeat
	MessagesDone int
	Error        string
}

// TaskAttempts returns the ended runs of a task, oldest first.
func (s *Store) TaskAttempts(ctx context.Context, taskID string) ([]TaskAttempt, error) {
	rows, err := s.read.QueryContext(ctx, s.sql(`
		SELECT task_id, epoch, attempt, owner, started_at, last_heartbeat_at, ended_at, outcome, phase,
			messages_done, error
		FROM sync_task_attempts WHERE task_id = $1 ORDER BY epoch`), taskID)
	if err != nil {
		return nil, fmt.Errorf("store: attempts of task %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []TaskAttempt
	for rows.Next() {
		var (
			a                  TaskAttempt
			owner              sql.NullString
			started, heartbeat sql.NullInt64
			ended              int64
		)
		if err := rows.Scan(&a.TaskID, &a.Epoch, &a.Attempt, &owner, &started, &heartbeat, &ended, &a.Outcome,
			&a.Phase, &a.MessagesDone, &a.Error); err != nil {
			return nil, fmt.Errorf("store: attempts of task %s: %w", taskID, err)
		}
		a.Owner = owner.String
		a.StartedAt, a.LastHeartbeatAt, a.EndedAt = fromNullMillis(started), fromNullMillis(heartbeat), fromMillis(ended)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: attempts of task %s: %w", taskID, err)
	}
	return out, nil
}
