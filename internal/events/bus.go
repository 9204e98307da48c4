// Package events carries "this task changed" signals to whoever watches it: SSE streams, and the
// worker's claim loop. A signal says only which task changed; the watcher re-reads the row, which
// is the truth. That makes every loss harmless: a dropped or coalesced signal costs a watcher at
// most its polling interval, never a wrong answer.
//
// Bus is the in-process fan-out. Bridge extends it across instances sharing a PostgreSQL
// database with LISTEN/NOTIFY, so a stream on instance A sees a sync that runs on instance B.
package events

import (
	"mailsync/internal/task"
	"strconv"
	"sync"
)

// WorkQueued is the topic of "a task was queued" signals, which idle claim loops subscribe to
// (SubscribeQueued). It is not a task id (those are UUIDs), so no stream of a task receives it.
const WorkQueued = "queued"

// Bus is an in-process pub/sub of task change signals. Publishing never blocks: each
// subscription holds at most one pending signal, and signals that find it full merge into it.
type Bus struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{} // by task id; "" receives every task's signals
}

// NewBus returns an empty Bus.
func NewBus() *Bus {
	return &Bus{subs: make(map[string]map[chan struct{}]struct{})}
}

// Subscribe returns a channel that receives a signal after every change of the task, and the
// function that ends the subscription. Signals that arrive while one is pending are merged.
func (b *Bus) Subscribe(taskID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	set := b.subs[taskID]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		b.subs[taskID] = set
	}
	set[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.subs[taskID], ch)
			if len(b.subs[taskID]) == 0 {
				delete(b.subs, taskID)
			}
		})
	}
}

// SubscribeAll is Subscribe for the changes of every task (and every WorkQueued signal).
func (b *Bus) SubscribeAll() (<-chan struct{}, func()) { return b.Subscribe("") }

// SubscribeQueued is Subscribe for "a task was queued", here or (through a Bridge) on another
// instance: a worker's claim loop wakes on it instead of waiting for its next poll.
func (b *Bus) SubscribeQueued() (<-chan struct{}, func()) { return b.Subscribe(WorkQueued) }

// Publish signals the task's subscribers and the subscribers of every task. It never blocks.
func (b *Bus) Publish(taskID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, key := range []string{taskID, ""} {
		for ch := range b.subs[key] {
			select {
			case ch <- struct{}{}:
			default: // a signal is already pending: this one merges into it
			}
		}
		if taskID == "" {
			break
		}
	}
}

// TaskChanged publishes t's id, and WorkQueued when t is queued; it has the shape of
// task.Manager.Changed.
func (b *Bus) TaskChanged(t task.Task) {
	b.Publish(t.ID)
	if t.State == task.Queued {
		b.Publish(WorkQueued)
	}
}

// Subscribers returns how many subscriptions are open (for tests and metrics).
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, set := range b.subs {
		n += len(set)
	}
	return n
}

// ChangesTopic is the topic of "the account's change log grew" signals, published after every
// commit that wrote changes (store.Store.OnChanges). It is not a task id, so no task's stream
// receives it.
func ChangesTopic(accountID int64) string { return "changes:" + strconv.FormatInt(accountID, 10) }
