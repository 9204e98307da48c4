package task

import (
	"context"
	"fmt"
	"time"
)

// Died reports whether a finished task ended because its workers died on every attempt: each
// claim of it ended with the worker silent (a crash, an OOM kill, a process that hung), none with
// an answer of the sync itself. That is what a crash loop leaves behind.
func Died(t Task) bool {
	return t.State == Failed && t.Deaths > 0 && t.Deaths >= t.Attempt
}

// backoffHistory is how many recent tasks the backoff looks at: enough for the delay to reach any
// sensible maximum (5 minutes doubled 16 times is over 200 days).
const backoffHistory = 16

// CrashBackoff decides, from an account's recent finished tasks (newest first), until when its
// automatic syncs wait: after k tasks in a row that died (Died), base·2^(k-1), at most max,
// counted from the end of the newest. A task that did not die ends the run of deaths, so one
// success (or an ordinary failure, or a cancel) lifts the backoff. It returns the zero time when
// nothing holds the account back at now. It is pure: the history and the clock are its inputs.
func CrashBackoff(recent []Task, now time.Time, base, max time.Duration) time.Time {
	if base <= 0 {
		return time.Time{}
	}
	max = maxDuration(max, base)
	deaths := 0
	for _, t := range recent {
		if !Died(t) {
			break
		}
		deaths++
	}
	if deaths == 0 {
		return time.Time{}
	}
	delay := base
	for i := 1; i < deaths && delay < max; i++ {
		delay *= 2
	}
	delay = min(delay, max)
	until := recent[0].FinishedAt.Add(delay)
	if !now.Before(until) {
		return time.Time{}
	}
	return until
}

// HeldUntil returns until when the account's automatic syncs must wait because its last tasks
// died on every attempt (zero: they need not), by the database clock unless Now is set. The
// scheduler and the IMAP push watcher ask it before every Start; a user's Sync now does not, so
// a person can always try once more, and that try is bounded by MaxAttempts and says where it
// died.
func (m *Manager) HeldUntil(ctx context.Context, accountID int64) (time.Time, error) {
	if m.config.CrashBackoff <= 0 {
		return time.Time{}, nil
	}
	recent, err := m.store.RecentTasks(ctx, accountID, backoffHistory)
	if err != nil {
		return time.Time{}, fmt.Errorf("task: crash backoff of account %d: %w", accountID, err)
	}
	if len(recent) == 0 {
		return time.Time{}, nil
	}
	now := m.now()
	if now.IsZero() {
		now = recent[0].ObservedAt
	}
	return CrashBackoff(recent, now, m.config.CrashBackoff, m.config.CrashBackoffMax), nil
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
