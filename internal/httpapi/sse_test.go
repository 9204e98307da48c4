package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// sseEvent is one server-sent event as a client parses it.
type sseEvent struct {
	ID, Name string
	Task     httpapi.TaskJSON
}

// stream is an open SSE connection read by a goroutine.
type stream struct {
	resp     *http.Response
	events   chan sseEvent
	comments chan string
	done     chan struct{} // closed when the server closed the stream
	cancel   context.CancelFunc
}

// openStream opens the task's event stream as u, resuming after lastID when it is not empty.
func (e *env) openStream(t *testing.T, u user, taskID, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/api/sync/tasks/"+taskID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{resp: resp, events: make(chan sseEvent, 1000), comments: make(chan string, 1000), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { s.close() })
	go func() {
		defer close(s.done)
		readEvents(resp.Body, func(id, name string, data []byte) {
			ev := sseEvent{ID: id, Name: name}
			if err := json.Unmarshal(data, &ev.Task); err != nil {
				panic("bad event data " + string(data))
			}
			s.events <- ev
		}, func(line string) { s.comments <- line })
	}()
	return s
}

// readEvents parses server-sent events from r until it ends: event is called with every named
// event, comment with every comment line (keepalives).
func readEvents(r io.Reader, event func(id, name string, data []byte), comment func(line string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var id, name, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if name != "" {
				event(id, name, []byte(data))
			}
			id, name, data = "", "", ""
		case strings.HasPrefix(line, ":"):
			comment(line)
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event, failing after a few seconds without one.
func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		select {
		case ev := <-s.events:
			return ev
		default:
		}
		t.Fatal("the stream closed while an event was expected")
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

// rest reads events until the server closes the stream.
func (s *stream) rest(t *testing.T) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		select {
		case ev := <-s.events:
			out = append(out, ev)
		case <-s.done:
			for {
				select {
				case ev := <-s.events:
					out = append(out, ev)
				default:
					return out
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the server did not close the stream; events so far: %v", names(out))
		}
	}
}

func names(evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name+":"+strconv.Itoa(e.Task.Progress.MessagesDone))
	}
	return out
}

var terminalNames = map[string]bool{"succeeded": true, "failed": true, "cancelled": true}

// checkSequence asserts what every client may rely on: progress never goes back, ids never go
// back, and there is exactly one terminal event, the last one.
func checkSequence(t *testing.T, evs []sseEvent, wantTerminal string) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	lastDone, lastID, terminals := -1, int64(-1), 0
	for i, ev := range evs {
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		if err != nil || id < lastID {
			t.Fatalf("event %d id %q after %d: ids must be numbers that never decrease (%v)", i, ev.ID, lastID, names(evs))
		}
		lastID = id
		if ev.Task.Progress.MessagesDone < lastDone {
			t.Fatalf("progress went back at event %d: %v", i, names(evs))
		}
		lastDone = ev.Task.Progress.MessagesDone
		if terminalNames[ev.Name] {
			terminals++
			if i != len(evs)-1 {
				t.Fatalf("events after the terminal one: %v", names(evs))
			}
			if string(ev.Task.State) != ev.Name {
				t.Fatalf("terminal event %q carries state %q", ev.Name, ev.Task.State)
			}
		} else if ev.Name != "snapshot" && ev.Name != "progress" {
			t.Fatalf("unknown event %q", ev.Name)
		}
	}
	if terminals != 1 || evs[len(evs)-1].Name != wantTerminal {
		t.Fatalf("want exactly one terminal event %q at the end, got %v", wantTerminal, names(evs))
	}
}

// drive claims the queued task and reports progress done = from..to by step, pausing between.
func drive(t *testing.T, e *env, l task.Lease, from, to, step int) {
	t.Helper()
	for done := from; done <= to; done += step {
		if _, err := e.tasks.Heartbeat(context.Background(), l, task.Progress{Phase: "fetch", MessagesTotal: 100, MessagesDone: done}); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func claim(t *testing.T, e *env) task.Task {
	t.Helper()
	tk, ok, err := e.tasks.Claim(context.Background(), "test-worker")
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	return tk
}

func TestEventStream(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		st := e.startSync(e.alice, a.ID)
		s := e.openStream(t, e.alice, st.Task.ID, "")
		if ct := s.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		first := s.next(t)
		if first.Name != "snapshot" || first.Task.State != "queued" || first.Task.ID != st.Task.ID {
			t.Fatalf("first event %+v, want a snapshot of the queued task", first)
		}
		tk := claim(t, e)
		drive(t, e, tk.Lease(), 10, 100, 10)
		if _, err := e.tasks.Finish(context.Background(), tk.Lease(), task.Succeeded, task.Progress{MessagesTotal: 100, MessagesDone: 100}, ""); err != nil {
			t.Fatal(err)
		}
		evs := append([]sseEvent{first}, s.rest(t)...)
		checkSequence(t, evs, "succeeded")
		if len(evs) < 4 {
			t.Fatalf("only %d events for ten progress steps: %v", len(evs), names(evs))
		}
		if last := evs[len(evs)-1].Task; last.Percent != 100 || last.FinishedAt == nil || last.Live {
			t.Fatalf("terminal event task %+v", last)
		}

		// A stream opened on a finished task sends its terminal event and closes.
		again := e.openStream(t, e.alice, st.Task.ID, "").rest(t)
		checkSequence(t, again, "succeeded")
		if len(again) != 1 {
			t.Fatalf("stream of a finished task: %v, want just the terminal event", names(again))
		}
	})
}

// TestEventStreamResumes disconnects mid-sync and reconnects with Last-Event-ID twice: the client
// misses no state, sees progress only grow, gets exactly one terminal event, and a reconnect after
// that answers 204 so an EventSource stops.
func TestEventStreamResumes(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		st := e.startSync(e.alice, a.ID)
		tk := claim(t, e)

		s1 := e.openStream(t, e.alice, st.Task.ID, "")
		var seen []sseEvent
		seen = append(seen, s1.next(t))
		drive(t, e, tk.Lease(), 10, 30, 10)
		for seen[len(seen)-1].Task.Progress.MessagesDone < 30 {
			seen = append(seen, s1.next(t))
		}
		s1.close()

		// While the client is away the sync moves on.
		drive(t, e, tk.Lease(), 40, 60, 10)
		s2 := e.openStream(t, e.alice, st.Task.ID, seen[len(seen)-1].ID)
		ev := s2.next(t)
		if ev.Task.Progress.MessagesDone != 60 {
			t.Fatalf("after reconnecting: %s at %d, want the current state (60)", ev.Name, ev.Task.Progress.MessagesDone)
		}
		seen = append(seen, ev)
		s2.close()

		// It finishes while the client is away again: the reconnect gets the terminal event.
		if _, err := e.tasks.Finish(context.Background(), tk.Lease(), task.Succeeded, task.Progress{MessagesTotal: 100, MessagesDone: 100}, ""); err != nil {
			t.Fatal(err)
		}
		s3 := e.openStream(t, e.alice, st.Task.ID, seen[len(seen)-1].ID)
		seen = append(seen, s3.rest(t)...)
		checkSequence(t, seen, "succeeded")

		// The client has the terminal event: a reconnect answers 204 No Content.
		r := e.request(e.alice, "GET", "/api/sync/tasks/"+st.Task.ID+"/events", nil, "Last-Event-ID", seen[len(seen)-1].ID)
		r.want(t, http.StatusNoContent)
	})
}

func TestEventStreamKeepaliveCancelAndShutdown(t *testing.T) {
	e := newEnv(t, "sqlite")
	a := e.addAccount(e.alice, "work")
	st := e.startSync(e.alice, a.ID)
	s := e.openStream(t, e.alice, st.Task.ID, "")
	s.next(t) // snapshot
	select {
	case c := <-s.comments:
		if !strings.Contains(c, "keepalive") {
			t.Fatalf("comment %q", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no keepalive comment on an idle stream")
	}
	// Cancelling a queued task ends it at once: the stream's terminal event is "cancelled".
	e.request(e.alice, "POST", "/api/sync/tasks/"+st.Task.ID+"/cancel", nil).want(t, 200)
	checkSequence(t, s.rest(t), "cancelled")

	// Shutdown ends open streams, so http.Server.Shutdown need not wait for them.
	st2 := e.startSync(e.alice, a.ID)
	s2 := e.openStream(t, e.alice, st2.Task.ID, "")
	s2.next(t)
	e.srv.Shutdown()
	select {
	case <-s2.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived Shutdown")
	}
	e.request(user{}, "GET", "/readyz", nil).wantProblem(t, http.StatusServiceUnavailable)
}
