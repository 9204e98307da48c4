package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Schedule is what an account's next scheduled sync depends on; the scheduler decides from it
// when that sync is due (worker.NextDue).
type Schedule struct {
	AccountID int64
	Interval  time.Duration
	Created   time.Time // when the account was added
	LastTask  time.Time // creation of its latest task of any kind; zero if it never had one
}

// Schedules returns every account that syncs on a schedule, has no active task and does not wait
// for its owner to sign in again (reauth_required), with the
// times its next scheduled sync depends on, and the time they were read at: now, or the
// database clock when now is zero.
func (s *Store) Schedules(ctx context.Context, now time.Time) (time.Time, []Schedule, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT a.id, a.sync_interval_s, a.created_at,
		       (SELECT max(t.created_at) FROM sync_tasks t WHERE t.account_id = a.id),
		       COALESCE($1, {{now}})
		FROM accounts a
		WHERE a.sync_interval_s > 0 AND a.auth_state = 'ok'
		  AND NOT EXISTS (SELECT 1 FROM sync_tasks t WHERE t.account_id = a.id AND t.state IN ('queued', 'running'))
		ORDER BY a.id`, at(now))
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("store: schedules: %w", err)
	}
	defer rows.Close()
	var out []Schedule
	for rows.Next() {
		var (
			sc                Schedule
			intervalS, create int64
			last              sql.NullInt64
			nowMS             int64
		)
		if err := rows.Scan(&sc.AccountID, &intervalS, &create, &last, &nowMS); err != nil {
			return time.Time{}, nil, fmt.Errorf("store: schedules: %w", err)
		}
		sc.Interval = time.Duration(intervalS) * time.Second
		sc.Created, sc.LastTask = fromMillis(create), fromNullMillis(last)
		now = fromMillis(nowMS)
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, nil, fmt.Errorf("store: schedules: %w", err)
	}
	if now.IsZero() { // no row carried the clock
		if now, err = s.Now(ctx); err != nil {
			return time.Time{}, nil, err
		}
	}
	return now, out, nil
}
