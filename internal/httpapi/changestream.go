package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/events"
)

// streamPage is how many changes of one account the stream reads at a time: the most it holds in
// memory per account, and its unit of fairness (every account with changes gets a page per round).
const streamPage = 100

// changeStream streams the changes of the user's accounts (or of ?accounts=1,2) as server-sent
// events (docs/changes.md#the-stream):
//
//   - "change": one change; its id is the cursor just after it, so an EventSource that reconnects
//     with Last-Event-ID resumes exactly after the last change it received, on any instance.
//   - "ready": once, when the stream has caught up with every account's log; its id is the
//     cursor there, so a reconnect does not read what it already had.
//   - "overflow": the last event of a stream that, after it had caught up, fell more than
//     StreamMaxLag changes behind an account's log and kept falling behind (a client slower than
//     the commits): its id is the cursor to resume from.
//   - "gone": the last event of a stream whose position was pruned meanwhile; its data is the 410
//     problem document a reconnect would get.
//
// It starts after Last-Event-ID, else after ?after=, else at every account's first change. A
// cursor the log cannot serve answers 410 before the stream opens, as GET /api/changes does.
//
// The change log is the truth. A commit's signal on the events bus ("changes:ACCOUNT", carried
// between instances by the PostgreSQL bridge) wakes the stream early; it re-reads every account
// at least every PollInterval anyway, which is also when it sees accounts the user added (when
// ?accounts is absent; they are read from their first change) or deleted. Nothing is buffered:
// the stream reads a page, writes it, and reads the next, at the client's pace. A client that
// does not take a write within StreamWriteTimeout is disconnected on the spot.
func (s *Server) changeStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	release, refused := s.streams.open(userFrom(ctx).ID, "")
	if refused != "" {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusTooManyRequests, refused)
		return
	}
	defer release()

	q := r.URL.Query()
	filter, err := parseIDs(q.Get("accounts"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	from := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if from == "" {
		from = q.Get("after")
	}
	pos, err := parseCursor(from)
	if err != nil {
		badCursor(err).write(w)
		return
	}

	wk := newChangeWakeups(s.cfg.Events)
	defer wk.close()
	ids, own, err := s.scope(ctx, filter)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, id := range ids {
		wk.add(id) // before the first read: no commit can slip between
	}
	if _, err := s.heads(ctx, ids, pos); err != nil {
		var p *cursorProblem
		if errors.As(err, &p) {
			p.write(w)
			return
		}
		s.writeError(w, r, err)
		return
	}
	pos.keep(own)
	for _, id := range ids {
		if _, ok := pos[id]; !ok {
			pos[id] = 0 // named from the first event on, so that no id is empty
		}
	}

	rc := http.NewResponseController(w)
	// Each write has its own deadline (write); none may outlive the stream, or a request that
	// reuses the connection after an overflow would meet it.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st := &changeStreamer{s: s, w: w, rc: rc, pos: pos, ids: ids, user: userFrom(ctx).ID, lags: map[int64]int64{}}
	if !st.write([]byte(": stream of changes\n\n")) {
		return
	}

	dirty := map[int64]bool{}
	for _, id := range ids {
		dirty[id] = true
	}
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	keepalive := time.NewTicker(s.cfg.KeepAlive)
	defer keepalive.Stop()
	var (
		nextRead = time.Now()
		readAt   = time.After(0)
	)
	wake := func() {
		if readAt == nil {
			readAt = time.After(time.Until(nextRead))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return // the client reconnects, to this instance's successor or another one
		case <-wk.ch:
			for _, id := range wk.take() {
				if slices.Contains(st.ids, id) {
					dirty[id] = true
				}
			}
			wake()
		case <-poll.C:
			st.refresh(ctx, filter, wk)
			clear(dirty) // every account still streamed is read again, and none that is not
			for _, id := range st.ids {
				dirty[id] = true
			}
			wake()
		case <-keepalive.C:
			if !st.write([]byte(": keepalive\n\n")) {
				return
			}
		case <-readAt:
			readAt, nextRead = nil, time.Now().Add(s.cfg.MinEventInterval)
			if !st.pump(ctx, dirty) {
				return
			}
		}
	}
}

// changeStreamer is the state of one change stream.
type changeStreamer struct {
	s    *Server
	w    http.ResponseWriter
	rc   *http.ResponseController
	user int64
	pos  cursor          // what the client has been sent
	ids  []int64         // the accounts streamed, sorted
	live bool            // caught up once: from then on the lag bound applies
	lags map[int64]int64 // per account behind its log: how far, at the last full page
}

// pump sends every change after pos of the dirty accounts, a page per account per round, until
// each is caught up. It reports false when the stream is over.
func (st *changeStreamer) pump(ctx context.Context, dirty map[int64]bool) bool {
	s := st.s
	for len(dirty) > 0 {
		if ctx.Err() != nil || s.shuttingDown() {
			return false
		}
		for _, id := range slices.Sorted(maps.Keys(dirty)) {
			cs, err := s.store.Changes(ctx, id, st.pos[id], streamPage)
			if errors.Is(err, changes.ErrGone) {
				st.gone(ctx, id)
				return false
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("httpapi: change stream cannot read a change log; retrying at the next poll", "account", id, "err", err)
				}
				delete(dirty, id)
				continue
			}
			if len(cs) > 0 && !st.send(cs) {
				return false
			}
			if len(cs) < streamPage {
				delete(dirty, id)
				delete(st.lags, id)
				continue
			}
			if st.live {
				// Behind by more than the bound and not gaining: a burst the client drains page
				// by page is fine, a client slower than the commits is not.
				head, err := s.store.ChangeHead(ctx, id)
				lag := head.Last - st.pos[id]
				if prev, ok := st.lags[id]; err == nil && ok && lag > s.cfg.StreamMaxLag && lag >= prev {
					st.overflow(id, lag)
					return false
				}
				if err == nil {
					st.lags[id] = lag
				}
			}
		}
	}
	if !st.live {
		st.live = true
		data, _ := json.Marshal(map[string]any{"cursor": st.pos.String(), "accounts": st.ids})
		return st.write(st.event("ready", data))
	}
	return true
}

// send writes cs, one event each, whose id is the cursor just after it.
func (st *changeStreamer) send(cs []changes.Change) bool {
	var buf bytes.Buffer
	for _, c := range cs {
		st.pos[c.AccountID] = c.Seq
		data, _ := json.Marshal(NewChangeJSON(c))
		buf.Write(st.event("change", data))
	}
	return st.write(buf.Bytes())
}

// event is one server-sent event at the current cursor.
func (st *changeStreamer) event(name string, data []byte) []byte {
	var b bytes.Buffer
	if id := st.pos.String(); id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", name, data)
	return b.Bytes()
}

// write sends p and flushes it, within StreamWriteTimeout: a client that takes nothing for that
// long is disconnected rather than waited for (it resumes from its Last-Event-ID).
func (st *changeStreamer) write(p []byte) bool {
	// The error (ErrNotSupported) only comes from a writer that hides its connection; the stream
	// then keeps the server's own write timeout.
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.s.cfg.StreamWriteTimeout))
	_, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		st.s.log.Info("httpapi: change stream disconnected a client that took no data in time",
			"user", st.user, "write_timeout", st.s.cfg.StreamWriteTimeout, "cursor", st.pos.String())
	}
	return err == nil
}

// overflow ends a stream that fell too far behind: its last event says where to resume.
func (st *changeStreamer) overflow(accountID, lag int64) {
	st.s.log.Info("httpapi: change stream fell too far behind; ending it with an overflow event",
		"user", st.user, "account", accountID, "lag", lag, "max_lag", st.s.cfg.StreamMaxLag)
	data, _ := json.Marshal(map[string]any{
		"cursor": st.pos.String(), "account_id": accountID, "lag": lag,
		"detail": fmt.Sprintf("this stream is %d changes behind account %d (more than %d): it ends here; reconnect with Last-Event-ID, or page with GET /api/changes?after=CURSOR",
			lag, accountID, st.s.cfg.StreamMaxLag),
	})
	st.write(st.event("overflow", data))
}

// gone ends a stream whose position was pruned while it was open.
func (st *changeStreamer) gone(ctx context.Context, accountID int64) {
	resume := st.pos.clone()
	if h, err := st.s.store.ChangeHead(ctx, accountID); err == nil {
		resume[accountID] = h.Last
	}
	data, _ := json.Marshal(goneForCursor([]int64{accountID}, resume))
	fmt.Fprintf(st.w, "event: gone\ndata: %s\n\n", data)
	_ = st.rc.Flush()
}

// refresh re-lists the user's accounts: an account added is streamed from its first change, one
// deleted is dropped. A failed listing keeps the accounts as they were until the next poll.
func (st *changeStreamer) refresh(ctx context.Context, filter []int64, wk *changeWakeups) {
	_, own, err := st.s.scope(ctx, nil)
	if err != nil {
		return
	}
	var ids []int64
	if len(filter) == 0 {
		ids = slices.Sorted(maps.Keys(own))
	} else {
		for _, id := range st.ids {
			if own[id] {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range st.ids {
		if !slices.Contains(ids, id) {
			wk.remove(id)
			delete(st.pos, id)
		}
	}
	for _, id := range ids {
		if _, ok := st.pos[id]; !ok {
			wk.add(id)
			st.pos[id] = 0
		}
	}
	st.ids = ids
}

// changeWakeups merges the bus signals of several accounts' change topics into one channel, and
// remembers which accounts they were for.
type changeWakeups struct {
	sub   Subscriber
	ch    chan struct{}
	stops map[int64]func()

	mu    sync.Mutex
	dirty map[int64]bool
}

func newChangeWakeups(sub Subscriber) *changeWakeups {
	return &changeWakeups{sub: sub, ch: make(chan struct{}, 1), stops: map[int64]func(){}, dirty: map[int64]bool{}}
}

func (wk *changeWakeups) add(id int64) {
	if wk.stops[id] != nil {
		return
	}
	sig, stop := wk.sub.Subscribe(events.ChangesTopic(id))
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case <-quit:
				return
			case <-sig:
				wk.mu.Lock()
				wk.dirty[id] = true
				wk.mu.Unlock()
				select {
				case wk.ch <- struct{}{}:
				default: // a wakeup is pending already
				}
			}
		}
	}()
	wk.stops[id] = func() {
		stop()
		close(quit)
	}
}

func (wk *changeWakeups) remove(id int64) {
	if stop := wk.stops[id]; stop != nil {
		stop()
		delete(wk.stops, id)
	}
}

// take returns the accounts signalled since the last take.
func (wk *changeWakeups) take() []int64 {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	out := slices.Collect(maps.Keys(wk.dirty))
	clear(wk.dirty)
	return out
}

func (wk *changeWakeups) close() {
	for id := range wk.stops {
		wk.remove(id)
	}
}

// parseIDs reads a comma-separated list of account ids ("" is none).
func parseIDs(s string) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int64
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("accounts=%q: want comma-separated account ids", clip(s))
		}
		out = append(out, id)
	}
	return out, nil
}
