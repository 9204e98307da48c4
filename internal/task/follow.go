package task

import (
	"context"
	"fmt"
	"strings"
)

// abandonedPrefix begins the error of a task that Start failed because it was dead when a sync was
// asked for; store.StartTask writes it in the transaction that queues the task replacing it.
const abandonedPrefix = "abandoned: "

// Follow is the one rule of every waiter on a task (the CLI's sync, the event stream; see
// docs/lifecycle.md#waiters-and-event-streams): given the task it follows, as just read, it
// returns the task to follow from now on, so that nobody ever waits on a task whose worker is
// gone.
//
//   - A live task, or one that ended on its own: t itself.
//   - An active task that is no longer live (its worker died, or no worker took it in time): the
//     waiter reaps now instead of waiting for a reaper that may not run at all (the CLI has none),
//     and follows what the reap made of the task: the same task queued for its next attempt, or
//     its terminal row once its attempts are spent. Reaping, not starting a fresh task, keeps the
//     attempt budget: a sync that kills its worker every time still ends failed.
//   - A task Start abandoned (someone asked for a sync while it was dead): the account's newer
//     task, which replaced it.
//
// A result with another ID is a replacement: the waiter says so and follows it. Any number of
// waiters may call Follow on one dead task at once: the reap is the guarded one every instance
// runs, so the task changes once. A reap that fails returns t with the error; the waiter keeps
// following t and tries again at its next look.
func (m *Manager) Follow(ctx context.Context, t Task) (Task, error) {
	if t.State.Active() {
		if m.Live(t) {
			return t, nil
		}
		if _, err := m.Reap(ctx); err != nil {
			return t, fmt.Errorf("task: reap the dead task %s: %w", t.ID, err)
		}
		cur, err := m.Get(ctx, t.ID)
		if err != nil {
			return t, fmt.Errorf("task: follow %s: %w", t.ID, err)
		}
		if cur.State.Active() {
			return cur, nil // queued for its next attempt (or left to the next look)
		}
		t = cur
	}
	if t.State != Failed || !strings.HasPrefix(t.Error, abandonedPrefix) {
		return t, nil
	}
	next, err := m.Latest(ctx, t.AccountID)
	if err != nil {
		return t, fmt.Errorf("task: the replacement of %s: %w", t.ID, err)
	}
	if next.ID == t.ID || next.CreatedAt.Before(t.CreatedAt) {
		return t, nil
	}
	return next, nil
}
