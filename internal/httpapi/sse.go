package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// eventID is the SSE id of an event showing t: twice the latest time recorded in the row, plus
// one for a terminal row, so ids grow as the task moves and the terminal event's id is above
// every progress id, even one from the same millisecond.
func eventID(t task.Task) int64 {
	v := t.CreatedAt
	for _, at := range []time.Time{t.StartedAt, t.HeartbeatAt, t.FinishedAt, t.CancelRequestedAt} {
		if at.After(v) {
			v = at
		}
	}
	id := 2 * v.UnixMilli()
	if !t.State.Active() {
		id++
	}
	return id
}

// parseLastEventID reads the Last-Event-ID header: absent is 0.
func parseLastEventID(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("Last-Event-ID %q is not an id this server sent", h)
	}
	return id, nil
}

// taskEvents streams a task as server-sent events: a "snapshot" event first, "progress" events
// as the row changes (at most one per MinEventInterval), then exactly one terminal event named
// for the final state ("succeeded", "failed", "cancelled"), after which the server closes. A
// stream for a finished task sends just the terminal event; a reconnect (Last-Event-ID) after
// the client already has the terminal event answers 204, which stops an EventSource for good.
//
// The row is the truth: a signal from the events bus wakes the stream early, and it re-reads the
// row at least every PollInterval anyway, so a lost signal costs latency, never an event.
//
// A stream never waits on a dead task (task.Manager.Follow): when the task stops being live (its
// worker died) the stream reaps it at once and goes on with what that made of it, normally the
// same task queued for its next attempt, whose new run counts its progress from zero. When the
// task was abandoned by a Start and a new task of the account replaced it, the last event is
// "replaced" instead of "failed": its data is the new task, and the client follows that task's
// stream. Its id is at least the old task's terminal id, so a reconnect answers 204.
func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, fmt.Sprintf("task id %q is not a UUID", id))
		return
	}
	last, err := parseLastEventID(r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	signals, stop := s.cfg.Events.Subscribe(id) // before the first read: no change can slip between
	defer stop()
	t, err := s.ownTask(ctx, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !t.State.Active() && last >= eventID(t) {
		w.WriteHeader(http.StatusNoContent)
		return
	}

	rc := http.NewResponseController(w)
	// A server WriteTimeout must not cut a long stream. The error (ErrNotSupported) only comes from
	// a writer that hides its connection, and then the stream simply keeps the server's timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	send := func(name string, t task.Task) ([]byte, bool) {
		data, _ := json.Marshal(s.taskJSON(t))
		_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", eventID(t), name, data)
		return data, err == nil && rc.Flush() == nil
	}
	replaced := func(old, next task.Task) {
		data, _ := json.Marshal(s.taskJSON(next))
		if _, err := fmt.Fprintf(w, "id: %d\nevent: replaced\ndata: %s\n\n", max(eventID(old), eventID(next))|1, data); err == nil {
			rc.Flush()
		}
	}
	// end sends the stream's last event for the finished task: its terminal state, or its
	// replacement.
	end := func(t task.Task) {
		next, err := s.tasks.Follow(ctx, t)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("httpapi: event stream cannot look for the replacement of its task", "task", id, "err", err)
		}
		if next.ID != t.ID {
			replaced(t, next)
			return
		}
		send(string(t.State), t)
	}
	if !t.State.Active() {
		end(t)
		return
	}
	sent, ok := send("snapshot", t)
	if !ok {
		return
	}

	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	keepalive := time.NewTicker(s.cfg.KeepAlive)
	defer keepalive.Stop()
	var (
		nextRead = time.Now().Add(s.cfg.MinEventInterval)
		readAt   <-chan time.Time // armed while a re-read waits for the rate limit
	)
	wake := func() {
		if readAt == nil {
			readAt = time.After(time.Until(nextRead))
		}
	}
	if !s.tasks.Live(t) {
		wake() // opened on a dead task: settle it at the first read
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return // the client reconnects, to this instance's successor or another one
		case <-signals:
			wake()
		case <-poll.C:
			wake()
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-readAt:
			readAt, nextRead = nil, time.Now().Add(s.cfg.MinEventInterval)
			t, err := s.tasks.Get(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return // the account was deleted, and its tasks with it
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("httpapi: event stream cannot read its task", "task", id, "err", err)
				}
				continue
			}
			if t.State.Active() && !s.tasks.Live(t) {
				next, err := s.tasks.Follow(ctx, t) // its worker died: reap it, go on with its next attempt
				if err != nil && ctx.Err() == nil {
					s.log.Warn("httpapi: event stream cannot settle its dead task", "task", id, "err", err)
				}
				if next.ID != id {
					replaced(t, next)
					return
				}
				if next.Epoch != t.Epoch {
					s.log.Warn("httpapi: event stream reaped its dead task", "task", id, "state", next.State, "reason", next.Error)
				}
				t = next
			}
			if !t.State.Active() {
				end(t)
				return
			}
			data, _ := json.Marshal(s.taskJSON(t))
			if bytes.Equal(data, sent) {
				continue
			}
			if sent, ok = send("progress", t); !ok {
				return
			}
		}
	}
}
