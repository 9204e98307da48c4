package store

import (
	"mailsync/internal/task"

	"context"
	"database/sql"
	"fmt"
)

// TaskAttempts returns the ended runs of a task, oldest first.
func (s *Store) TaskAttempts(ctx context.Context, taskID string) ([]task.Attempt, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT task_id, epoch, attempt, owner, started_at, last_heartbeat_at, ended_at, outcome, phase,
			messages_done, error
		FROM sync_task_attempts WHERE task_id = $1 ORDER BY epoch`, taskID)
	if err != nil {
		return nil, fmt.Errorf("store: attempts of task %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []task.Attempt
	for rows.Next() {
		var (
			a                  task.Attempt
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
