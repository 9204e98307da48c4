package events

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"log/slog"
	"mailsync/internal/task"
	"net/url"
	"sync"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
)

// received reports whether ch delivers a signal within d.
func received(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestBusDeliversToTheTaskAndToAll(t *testing.T) {
	b := NewBus()
	a, stopA := b.Subscribe("a")
	defer stopA()
	other, stopOther := b.Subscribe("b")
	defer stopOther()
	all, stopAll := b.SubscribeAll()
	defer stopAll()

	b.Publish("a")
	if !received(a, time.Second) || !received(all, time.Second) {
		t.Fatal("the task's subscriber or the all-subscriber got no signal")
	}
	if received(other, 50*time.Millisecond) {
		t.Fatal("another task's subscriber got a signal")
	}
	stopA()
	stopA() // idempotent
	b.Publish("a")
	if received(a, 50*time.Millisecond) {
		t.Fatal("a cancelled subscription got a signal")
	}
	if n := b.Subscribers(); n != 2 {
		t.Fatalf("%d subscribers left, want 2", n)
	}
}

func TestBusSignalsQueuedWorkOnlyForQueuedTasks(t *testing.T) {
	b := NewBus()
	queued, stop := b.SubscribeQueued()
	defer stop()
	for _, state := range []task.State{task.Running, task.Succeeded, task.Failed} {
		b.TaskChanged(task.Task{ID: "t", State: state})
		if received(queued, 20*time.Millisecond) {
			t.Fatalf("a %s task woke the claim loops", state)
		}
	}
	b.TaskChanged(task.Task{ID: "t", State: task.Queued})
	if !received(queued, time.Second) {
		t.Fatal("a queued task did not wake the claim loops")
	}
}

func TestBusNeverBlocksOnSlowSubscribers(t *testing.T) {
	b := NewBus()
	slow, stop := b.Subscribe("t") // never read until the end
	defer stop()
	done := make(chan struct{})
	go func() {
		for range 100000 {
			b.Publish("t")
		}
		close(done)
	}()
	if !received(done, 5*time.Second) {
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	if !received(slow, time.Second) {
		t.Fatal("the slow subscriber lost every signal; one must be pending")
	}
	if received(slow, 20*time.Millisecond) {
		t.Fatal("signals were queued, not merged")
	}
}

func TestBusConcurrentUse(t *testing.T) {
	b := NewBus()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			id := string(rune('a' + i%5))
			ch, stop := b.Subscribe(id)
			defer stop()
			for range 200 {
				b.Publish(id)
				select {
				case <-ch:
				default:
				}
			}
		})
	}
	wg.Wait()
	if n := b.Subscribers(); n != 0 {
		t.Fatalf("%d subscriptions leaked", n)
	}
}

// pgDSN returns the test PostgreSQL URL tagged with an application name, so the test can find
// and kill the bridge's connections.
func pgDSN(t *testing.T, app string) string {
	t.Helper()
	u, err := url.Parse(storetest.RequirePostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestBridgeCarriesSignalsBetweenInstances runs two instances' buses on one PostgreSQL: a change
// published on A reaches a subscriber on B, also after B's connections were killed.
func TestBridgeCarriesSignalsBetweenInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	channel := "mailsync_test_" + rand.Text()[:8]
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	appB := "bridge_b_" + rand.Text()[:8]
	busA, busB := NewBus(), NewBus()
	a := NewBridge(busA, pgDSN(t, "bridge_a"), channel, log)
	b := NewBridge(busB, pgDSN(t, appB), channel, log)
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	wg.Go(func() { _ = b.Run(ctx) })
	defer wg.Wait()
	defer cancel()

	onB, stop := busB.Subscribe("task-1")
	defer stop()
	localA, stopLocal := busA.Subscribe("task-1")
	defer stopLocal()

	// deliver publishes on A until B hears it: the listener may not be connected yet.
	deliver := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			a.Publish("task-1")
			if received(onB, 100*time.Millisecond) {
				return
			}
		}
		t.Fatalf("%s: instance B never heard of the change on A", what)
	}
	deliver("first")
	if !received(localA, time.Second) {
		t.Fatal("A's own subscriber was not signalled")
	}

	admin, err := sql.Open("pgx", storetest.RequirePostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var killed int
	if err := admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, appB).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("found none of B's connections to kill")
	}
	deliver("after B's connections were killed")
}
