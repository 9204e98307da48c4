package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// untilState reads events until one shows the task in state want, failing after within.
func (s *stream) untilState(t *testing.T, want task.State, within time.Duration) (sseEvent, []sseEvent) {
	t.Helper()
	var seen []sseEvent
	deadline := time.After(within)
	for {
		select {
		case ev := <-s.events:
			seen = append(seen, ev)
			if ev.Task.State == want {
				return ev, seen
			}
		case <-s.done:
			t.Fatalf("the stream closed before the task was %s: %v", want, names(seen))
		case <-deadline:
			t.Fatalf("the task was not %s within %s: %v", want, within, names(seen))
		}
	}
}

// A stream following a task whose worker died does not wait for a reaper: it reaps the task as
// soon as it is dead and goes on with its next attempt, to the end, on the same stream.
func TestEventStreamFollowsTheRetryOfADeadTask(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		st := e.startSync(e.alice, a.ID)
		dying := claim(t, e)
		if _, err := e.tasks.Heartbeat(ctx, dying.Lease(), task.Progress{Phase: "fetch", MessagesTotal: 100, MessagesDone: 40}); err != nil {
			t.Fatal(err)
		}
		s := e.openStream(t, e.alice, st.Task.ID, "")
		if first := s.next(t); first.Name != "snapshot" || first.Task.State != task.Running {
			t.Fatalf("first event %s %s, want a snapshot of the running task", first.Name, first.Task.State)
		}
		died := time.Now() // its worker never heartbeats again, as if SIGKILLed; no reaper runs

		timeout := e.tasks.Config().HeartbeatTimeout
		requeued, _ := s.untilState(t, task.Queued, timeout+5*time.Second)
		if after := time.Since(died); after > timeout+2*time.Second {
			t.Errorf("the stream settled the dead task %s after it died, want within the timeout %s and a read", after, timeout)
		}
		if requeued.Name != "progress" || requeued.Task.ID != st.Task.ID || !requeued.Task.Live || !strings.Contains(requeued.Task.Error, "retrying") {
			t.Fatalf("the settled task is shown as %s %+v, want a progress event of the same task, queued again and live", requeued.Name, requeued.Task)
		}

		retry, ok, err := e.tasks.Claim(ctx, "replacement-worker")
		if err != nil || !ok || retry.ID != st.Task.ID {
			t.Fatalf("claim of the retry: %v %v %v", retry.ID, ok, err)
		}
		drive(t, e, retry.Lease(), 10, 100, 30)
		if _, err := e.tasks.Finish(ctx, retry.Lease(), task.Succeeded, task.Progress{MessagesTotal: 100, MessagesDone: 100}, ""); err != nil {
			t.Fatal(err)
		}
		evs := s.rest(t)
		if len(evs) == 0 || evs[len(evs)-1].Name != "succeeded" {
			t.Fatalf("the stream after the retry: %v, want it to end with succeeded", names(evs))
		}
		for _, ev := range evs {
			if ev.Task.ID != st.Task.ID {
				t.Fatalf("event %s shows task %s, want %s", ev.Name, ev.Task.ID, st.Task.ID)
			}
			if ev.Task.State == task.Running && ev.Task.Error != "" {
				t.Errorf("the running retry carries the error %q", ev.Task.Error)
			}
		}
		attempts, err := e.tasks.Attempts(ctx, st.Task.ID)
		if err != nil || len(attempts) != 2 || attempts[0].Outcome != task.Queued || attempts[1].Outcome != task.Succeeded {
			t.Fatalf("attempt log %+v (%v): want the dead run re-queued, then the success", attempts, err)
		}
	})
}

// A task that a Sync now replaced (it was dead when the user asked again) ends its stream with a
// "replaced" event carrying the new task; a stream opened on it later says the same; a reconnect
// after that event answers 204.
func TestEventStreamOfAReplacedTask(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		st := e.startSync(e.alice, a.ID)
		claim(t, e)
		s := e.openStream(t, e.alice, st.Task.ID, "")
		s.next(t) // snapshot

		// Another instance's Start judges the task dead (its clock a minute ahead, as the clock of
		// the database will be once the worker has been silent that long) and replaces it.
		later, err := task.NewManager(e.store, e.tasks.Config())
		if err != nil {
			t.Fatal(err)
		}
		later.Now = func() time.Time { return time.Now().Add(time.Minute) }
		fresh, created, err := later.Start(ctx, a.ID, false)
		if err != nil || !created {
			t.Fatalf("Start over the dead task: created=%v err=%v", created, err)
		}
		e.bus.TaskChanged(fresh)

		evs := s.rest(t)
		if len(evs) != 1 || evs[0].Name != "replaced" || evs[0].Task.ID != fresh.ID || evs[0].Task.State != task.Queued {
			t.Fatalf("the stream of the replaced task: %v, want one replaced event carrying %s", names(evs), fresh.ID)
		}
		again := e.openStream(t, e.alice, st.Task.ID, "").rest(t)
		if len(again) != 1 || again[0].Name != "replaced" || again[0].Task.ID != fresh.ID {
			t.Fatalf("a stream opened on the replaced task: %v, want the replaced event", names(again))
		}
		e.request(e.alice, "GET", "/api/sync/tasks/"+st.Task.ID+"/events", nil, "Last-Event-ID", evs[0].ID).
			want(t, http.StatusNoContent)
		next := e.openStream(t, e.alice, fresh.ID, "")
		if ev := next.next(t); ev.Name != "snapshot" || ev.Task.ID != fresh.ID {
			t.Fatalf("the replacement's stream starts with %s of %s", ev.Name, ev.Task.ID)
		}
	})
}
