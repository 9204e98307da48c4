package store

import (
	"mailsync/internal/task"

	"context"
	"fmt"
)

// TaskCounts returns how many tasks are in each state (states without tasks are absent).
func (s *Store) TaskCounts(ctx context.Context) (map[task.State]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT state, count(*) FROM sync_tasks GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("store: task counts: %w", err)
	}
	defer rows.Close()
	out := make(map[task.State]int)
	for rows.Next() {
		var (
			state task.State
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("store: task counts: %w", err)
		}
		out[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: task counts: %w", err)
	}
	return out, nil
}
