package store

import (
	"context"
	"fmt"
	"time"
)

// DueAccounts returns the accounts whose scheduled sync is due: they have an interval, no active
// task, and their last task was created longer than the interval ago (or they never synced).
func (s *Store) DueAccounts(ctx context.Context, now time.Time) ([]int64, error) {
	rows, err := s.read.QueryContext(ctx, s.sql(`
		SELECT a.id FROM accounts a
		WHERE a.sync_interval_s > 0
		  AND NOT EXISTS (SELECT 1 FROM sync_tasks t WHERE t.account_id = a.id AND t.state IN ('queued', 'running'))
		  AND COALESCE((SELECT max(t.created_at) FROM sync_tasks t WHERE t.account_id = a.id), 0)
		      <= COALESCE($1, {{now}}) - a.sync_interval_s * 1000
		ORDER BY a.id`), at(now))
	if err != nil {
		return nil, fmt.Errorf("store: due accounts: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: due accounts: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: due accounts: %w", err)
	}
	return ids, nil
}
