package httpapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mailsync/internal/webhook"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// changeWriter writes an account's changes as a sync does: batches committed under the lease of
// a running task (no reaper runs in these tests, so the lease holds).
type changeWriter struct {
	e     *env
	acct  int64
	lease task.Lease
	uids  map[string]uint32
}

func (e *env) changeWriter(t testing.TB, acct int64) *changeWriter {
	t.Helper()
	ctx := context.Background()
	if _, _, err := e.tasks.Start(ctx, acct, false); err != nil {
		t.Fatal(err)
	}
	tk, ok, err := e.tasks.Claim(ctx, fmt.Sprintf("writer-%d", acct))
	if err != nil || !ok || tk.AccountID != acct {
		t.Fatalf("claim for account %d: %+v %v %v", acct, tk, ok, err)
	}
	return &changeWriter{e: e, acct: acct, lease: tk.Lease(), uids: map[string]uint32{}}
}

// add stores n new messages in folder: n message.created changes, after a folder.created the
// first time.
func (w *changeWriter) add(t testing.TB, folder string, n int) {
	t.Helper()
	w.commit(t, w.newMessages(folder, n))
}

// newMessages is the batch of n new messages in folder.
func (w *changeWriter) newMessages(folder string, n int) store.Batch {
	var msgs []store.Message
	for range n {
		w.uids[folder]++
		uid := w.uids[folder]
		msgs = append(msgs, store.Message{UID: uid, MessageID: fmt.Sprintf("<%d.%d@%s>", w.acct, uid, folder),
			Subject: fmt.Sprintf("Message %d of account %d", uid, w.acct), From: "sender@example.test",
			Flags: []string{`\Seen`}, Size: 3, Raw: []byte("raw"), Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
	return store.Batch{Folder: w.folder(folder), Messages: msgs}
}

func (w *changeWriter) folder(name string) store.Folder {
	return store.Folder{AccountID: w.acct, Name: name, Delimiter: "/", UIDValidity: 1, UIDNext: w.uids[name] + 1}
}

func (w *changeWriter) commit(t testing.TB, b store.Batch) {
	t.Helper()
	if _, err := w.e.store.CommitBatch(context.Background(), w.lease, task.Progress{}, b); err != nil {
		t.Fatal(err)
	}
}

// logOf is the account's whole change log as the store has it.
func (e *env) logOf(t testing.TB, acct int64) []changes.Change {
	t.Helper()
	cs, err := e.store.Changes(context.Background(), acct, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

type accountChangesPage struct {
	Changes []httpapi.ChangeJSON `json:"changes"`
	Next    int64                `json:"next"`
	Head    int64                `json:"head"`
}

type changesPage struct {
	Changes []httpapi.ChangeJSON `json:"changes"`
	Next    string               `json:"next"`
	Head    string               `json:"head"`
}

type cursorProblemJSON struct {
	Type     string  `json:"type"`
	Status   int     `json:"status"`
	Detail   string  `json:"detail"`
	Accounts []int64 `json:"accounts"`
	Head     *int64  `json:"head"`
	Resume   *string `json:"resume"`
}

// wantSameChange checks that the API's change is the store's, field by field.
func wantSameChange(t *testing.T, got httpapi.ChangeJSON, want changes.Change) {
	t.Helper()
	if got.ID != fmt.Sprintf("%d:%d", want.AccountID, want.Seq) || got.AccountID != want.AccountID || got.Seq != want.Seq ||
		got.Kind != want.Kind || got.Folder != want.Folder || got.UID != want.UID || got.TaskID != want.TaskID ||
		!got.At.Equal(want.At) || string(got.Data) != string(want.Data) {
		t.Fatalf("change %+v (data %s), want %+v (data %s)", got, got.Data, want, want.Data)
	}
}

func TestAccountChangesPages(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		a := e.addAccount(e.alice, "work")
		w := e.changeWriter(t, a.ID)
		w.add(t, "INBOX", 4)
		w.commit(t, store.Batch{Folder: w.folder("INBOX"), Flags: []store.FlagChange{{UID: 2, Flags: []string{`\Flagged`}}}, Deleted: []uint32{3}})
		log := e.logOf(t, a.ID)
		if len(log) < 7 {
			t.Fatalf("the log has %d changes, want at least 7", len(log))
		}
		path := fmt.Sprintf("/api/accounts/%d/changes", a.ID)

		// Pages of 3 from 0 return the log in order, each with the cursor of the next.
		var got []httpapi.ChangeJSON
		after := int64(0)
		for {
			var p accountChangesPage
			e.request(e.alice, "GET", fmt.Sprintf("%s?after=%d&limit=3", path, after), nil).want(t, 200).json(t, &p)
			if p.Head != int64(len(log)) {
				t.Fatalf("head %d, want %d", p.Head, len(log))
			}
			if len(p.Changes) == 0 {
				if p.Next != after {
					t.Fatalf("an empty page moved the cursor from %d to %d", after, p.Next)
				}
				break
			}
			if len(p.Changes) > 3 || p.Next != p.Changes[len(p.Changes)-1].Seq {
				t.Fatalf("page after %d: %d changes, next %d", after, len(p.Changes), p.Next)
			}
			got, after = append(got, p.Changes...), p.Next
		}
		if len(got) != len(log) {
			t.Fatalf("paged %d changes, the log has %d", len(got), len(log))
		}
		for i := range log {
			wantSameChange(t, got[i], log[i])
		}
		var created changes.Message
		if err := json.Unmarshal(got[1].Data, &created); err != nil || got[1].Kind != changes.MessageCreated ||
			created.Subject != fmt.Sprintf("Message 1 of account %d", a.ID) || created.UIDValidity != 1 || !slices.Equal(created.Flags, []string{`\Seen`}) {
			t.Fatalf("message.created payload %s (%v)", got[1].Data, err)
		}

		// The default limit is 100; limit 0 answers only the head; the bounds are checked.
		var p accountChangesPage
		e.request(e.alice, "GET", path, nil).want(t, 200).json(t, &p)
		if len(p.Changes) != len(log) || p.Next != int64(len(log)) {
			t.Fatalf("default page: %d changes, next %d", len(p.Changes), p.Next)
		}
		e.request(e.alice, "GET", path+"?limit=0&after=2", nil).want(t, 200).json(t, &p)
		if len(p.Changes) != 0 || p.Next != 2 || p.Head != int64(len(log)) {
			t.Fatalf("limit 0: %+v", p)
		}
		e.request(e.alice, "GET", path+"?limit=1001", nil).wantProblem(t, 422)
		e.request(e.alice, "GET", path+"?after=-1", nil).wantProblem(t, 422)

		// Another user's account does not exist for bob, and an admin's is no different.
		e.request(e.bob, "GET", path, nil).wantProblem(t, 404)
		e.request(e.admin, "GET", path, nil).wantProblem(t, 404)
		e.request(user{}, "GET", path, nil).wantProblem(t, 401)
	})
}

func TestChangesOverAccounts(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		busy, quiet := e.addAccount(e.alice, "busy"), e.addAccount(e.alice, "quiet")
		bobs := e.addAccount(e.bob, "bobs")
		e.changeWriter(t, busy.ID).add(t, "INBOX", 30)
		e.changeWriter(t, quiet.ID).add(t, "INBOX", 3)
		e.changeWriter(t, bobs.ID).add(t, "INBOX", 5)
		logs := map[int64][]changes.Change{busy.ID: e.logOf(t, busy.ID), quiet.ID: e.logOf(t, quiet.ID)}

		// The first page shares its limit between the accounts: the busy one does not starve the other.
		var p changesPage
		e.request(e.alice, "GET", "/api/changes?limit=6", nil).want(t, 200).json(t, &p)
		perAccount := map[int64]int{}
		for _, c := range p.Changes {
			perAccount[c.AccountID]++
		}
		if len(p.Changes) != 6 || perAccount[busy.ID] != 3 || perAccount[quiet.ID] != 3 {
			t.Fatalf("first page of 6: %v", perAccount)
		}

		// Paging to the end yields every change of alice's accounts exactly once, in order per
		// account, and nothing of bob's.
		seen := map[int64][]httpapi.ChangeJSON{}
		after := ""
		for range 100 {
			var p changesPage
			e.request(e.alice, "GET", "/api/changes?limit=7&after="+url.QueryEscape(after), nil).want(t, 200).json(t, &p)
			if len(p.Changes) == 0 {
				if p.Next != after && after != "" {
					t.Fatalf("an empty page moved the cursor")
				}
				if p.Head != p.Next {
					t.Fatalf("at the end, head %q and next %q differ", p.Head, p.Next)
				}
				break
			}
			for _, c := range p.Changes {
				seen[c.AccountID] = append(seen[c.AccountID], c)
			}
			after = p.Next
		}
		if len(seen) != 2 {
			t.Fatalf("changes of accounts %v, want alice's two", slices.Collect(func(yield func(int64) bool) {
				for id := range seen {
					yield(id)
				}
			}))
		}
		for id, log := range logs {
			if len(seen[id]) != len(log) {
				t.Fatalf("account %d: %d changes paged, the log has %d", id, len(seen[id]), len(log))
			}
			for i := range log {
				wantSameChange(t, seen[id][i], log[i])
			}
		}

		// ?accounts narrows the scope; someone else's account there is a 404.
		e.request(e.alice, "GET", fmt.Sprintf("/api/changes?accounts=%d&limit=1000", quiet.ID), nil).want(t, 200).json(t, &p)
		if len(p.Changes) != len(logs[quiet.ID]) || p.Changes[0].AccountID != quiet.ID {
			t.Fatalf("?accounts=quiet: %d changes", len(p.Changes))
		}
		e.request(e.alice, "GET", fmt.Sprintf("/api/changes?accounts=%d,%d", quiet.ID, bobs.ID), nil).wantProblem(t, 404)

		// A cursor naming bob's account gives alice nothing of it, and is not echoed back.
		bobCursor := cursor{bobs.ID: 0}.String()
		e.request(e.alice, "GET", "/api/changes?limit=1000&after="+bobCursor, nil).want(t, 200).json(t, &p)
		next, err := parseCursor(p.Next)
		if err != nil || len(p.Changes) != len(logs[busy.ID])+len(logs[quiet.ID]) {
			t.Fatalf("with bob's account in the cursor: %d changes, %v", len(p.Changes), err)
		}
		if _, ok := next[bobs.ID]; ok {
			t.Fatalf("next %v carries bob's account", next)
		}
		for _, c := range p.Changes {
			if c.AccountID == bobs.ID {
				t.Fatal("alice got one of bob's changes")
			}
		}
	})
}

func TestChangesCursorErrors(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		a := e.addAccount(e.alice, "work")
		w := e.changeWriter(t, a.ID)
		w.add(t, "INBOX", 5)
		last := int64(len(e.logOf(t, a.ID)))

		// Not a cursor of ours: 400, typed.
		for _, bad := range []string{"!!!", "bm90IGEgY3Vyc29y" /* "not a cursor" */, cursorText("2:1,1:1"), cursorText("0:3"), cursorText("1:-2")} {
			r := e.request(e.alice, "GET", "/api/changes?after="+url.QueryEscape(bad), nil)
			r.wantProblem(t, 400)
			var p cursorProblemJSON
			r.json(t, &p)
			if p.Type != httpapi.ProblemBadCursor || !strings.Contains(p.Detail, "not one this server wrote") {
				t.Fatalf("cursor %q: %s", bad, r.body)
			}
		}

		// A position past the head is not this log's: 410, as a pruned one.
		path := fmt.Sprintf("/api/accounts/%d/changes", a.ID)
		r := e.request(e.alice, "GET", fmt.Sprintf("%s?after=%d", path, last+5), nil)
		r.wantProblem(t, 410)

		// Pruning the first changes makes a cursor below the floor gone: the problem says to
		// re-read the folders and gives where to continue; at the floor all is well.
		n, err := e.store.PruneChanges(context.Background(), time.Now().Add(time.Hour), 3)
		if err != nil || n != 3 {
			t.Fatalf("prune: %d %v", n, err)
		}
		r = e.request(e.alice, "GET", path+"?after=1", nil)
		r.wantProblem(t, 410)
		var p cursorProblemJSON
		r.json(t, &p)
		if p.Type != httpapi.ProblemCursorGone || p.Head == nil || *p.Head != last || !strings.Contains(p.Detail, "re-read") ||
			!slices.Equal(p.Accounts, []int64{a.ID}) {
			t.Fatalf("gone problem: %s", r.body)
		}
		var page accountChangesPage
		e.request(e.alice, "GET", path+"?after=3", nil).want(t, 200).json(t, &page)
		if len(page.Changes) != int(last-3) || page.Changes[0].Seq != 4 {
			t.Fatalf("after the floor: %+v", page)
		}

		// Over several accounts: the default cursor (0 everywhere) is gone too; "resume" moves
		// the gone account to its head and works.
		other := e.addAccount(e.alice, "other")
		e.changeWriter(t, other.ID).add(t, "INBOX", 1)
		r = e.request(e.alice, "GET", "/api/changes", nil)
		r.wantProblem(t, 410)
		r.json(t, &p)
		if p.Resume == nil || !slices.Equal(p.Accounts, []int64{a.ID}) {
			t.Fatalf("gone problem over accounts: %s", r.body)
		}
		var all changesPage
		e.request(e.alice, "GET", "/api/changes?after="+url.QueryEscape(*p.Resume), nil).want(t, 200).json(t, &all)
		if len(all.Changes) != len(e.logOf(t, other.ID)) || all.Changes[0].AccountID != other.ID {
			t.Fatalf("from the resume cursor: %+v", all.Changes)
		}
		// limit=0 never answers 410: it is how a new reader learns the heads.
		e.request(e.alice, "GET", "/api/changes?limit=0", nil).want(t, 200).json(t, &all)
		if head, err := parseCursor(all.Head); err != nil || head[a.ID] != last || head[other.ID] != 2 {
			t.Fatalf("head %q: %v %v", all.Head, head, err)
		}
	})
}

func cursorText(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// changeEvent is one event of a change stream as a client parses it.
type changeEvent struct {
	ID, Name string
	Data     json.RawMessage
	Change   httpapi.ChangeJSON // for "change" events
}

// changeStream is an open change stream read by a goroutine.
type changeStream struct {
	resp     *http.Response
	events   chan changeEvent
	comments chan string
	done     chan struct{}
	cancel   context.CancelFunc
}

// openChanges opens GET /api/changes/stream?query as u, after Last-Event-ID lastID when it is not
// empty, and wants a 200.
func (e *env) openChanges(t *testing.T, u user, query, lastID string) *changeStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/api/changes/stream?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+u.Token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("change stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &changeStream{resp: resp, events: make(chan changeEvent, 10000), comments: make(chan string, 1000),
		done: make(chan struct{}), cancel: cancel}
	t.Cleanup(s.close)
	go func() {
		defer close(s.done)
		readChangeEvents(resp.Body, s.events, s.comments)
	}()
	return s
}

// readChangeEvents parses a change stream's events from r until it ends; comments that find
// the channel full are dropped (a test reads keepalives only now and then).
func readChangeEvents(r io.Reader, events chan<- changeEvent, comments chan<- string) {
	readEvents(r, func(id, name string, data []byte) {
		ev := changeEvent{ID: id, Name: name, Data: data}
		if name == "change" {
			if err := json.Unmarshal(data, &ev.Change); err != nil {
				panic("bad change event data " + string(data))
			}
		}
		events <- ev
	}, func(line string) {
		select {
		case comments <- line:
		default:
		}
	})
}

func (s *changeStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event, failing after 10 s without one.
func (s *changeStream) next(t *testing.T) changeEvent {
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
	return changeEvent{}
}

// changes reads n change events, failing on any other event.
func (s *changeStream) changes(t *testing.T, n int) []changeEvent {
	t.Helper()
	var out []changeEvent
	for len(out) < n {
		ev := s.next(t)
		if ev.Name != "change" {
			t.Fatalf("event %q (%s) while %d more changes were expected", ev.Name, ev.Data, n-len(out))
		}
		out = append(out, ev)
	}
	return out
}

// wantEvent reads the next event and checks its name.
func (s *changeStream) wantEvent(t *testing.T, name string) changeEvent {
	t.Helper()
	ev := s.next(t)
	if ev.Name != name {
		t.Fatalf("event %q (%s), want %q", ev.Name, ev.Data, name)
	}
	return ev
}

// wantChanges checks that events are exactly the store's changes want, each with the cursor
// just after it as its id.
func wantChanges(t *testing.T, evs []changeEvent, want []changes.Change, from cursor) {
	t.Helper()
	pos := from.clone()
	if len(evs) != len(want) {
		t.Fatalf("%d change events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		wantSameChange(t, ev.Change, want[i])
		pos[want[i].AccountID] = want[i].Seq
		got, err := parseCursor(ev.ID)
		if err != nil {
			t.Fatalf("event id %q: %v", ev.ID, err)
		}
		for id, n := range pos {
			if got[id] != n {
				t.Fatalf("event %d (change %s) has id %v, want %v", i, ev.Change.ID, got, pos)
			}
		}
	}
}

func TestChangeStreamResumesExactly(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		a := e.addAccount(e.alice, "work")
		w := e.changeWriter(t, a.ID)
		w.add(t, "INBOX", 3)
		log := e.logOf(t, a.ID)

		// From the start: the log so far, "ready", then what commits while the stream is open.
		s := e.openChanges(t, e.alice, "", "")
		wantChanges(t, s.changes(t, len(log)), log, cursor{a.ID: 0})
		ready := s.wantEvent(t, "ready")
		if pos, err := parseCursor(ready.ID); err != nil || pos[a.ID] != int64(len(log)) {
			t.Fatalf("ready id %q: %v %v", ready.ID, pos, err)
		}
		w.add(t, "INBOX", 2)
		live := s.changes(t, 2)
		full := e.logOf(t, a.ID)
		wantChanges(t, live, full[len(log):], cursor{a.ID: int64(len(log))})
		s.close()

		// A reconnect with the id of the second event resumes with the third, and Last-Event-ID
		// wins over ?after (an EventSource keeps its URL when it reconnects).
		second := e.openChanges(t, e.alice, "", "")
		evs := second.changes(t, 2)
		second.close()
		resumed := e.openChanges(t, e.alice, "after="+url.QueryEscape(cursor{a.ID: 0}.String()), evs[1].ID)
		wantChanges(t, resumed.changes(t, len(full)-2), full[2:], cursor{a.ID: 2})
		resumed.wantEvent(t, "ready")

		// ?after alone works the same.
		after := e.openChanges(t, e.alice, "after="+url.QueryEscape(evs[0].ID), "")
		wantChanges(t, after.changes(t, len(full)-1), full[1:], cursor{a.ID: 1})
	})
}

func TestChangeStreamAccountsAndAccess(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d, func(c *instance.Config) { c.API.MaxStreamsPerUser, c.API.MaxStreamsPerTask = 3, 1 })
		first := e.addAccount(e.alice, "first")
		bobs := e.addAccount(e.bob, "bobs")
		e.changeWriter(t, bobs.ID).add(t, "INBOX", 2)
		all := e.openChanges(t, e.alice, "", "")
		only := e.openChanges(t, e.alice, fmt.Sprintf("accounts=%d", first.ID), "")
		all.wantEvent(t, "ready")
		only.wantEvent(t, "ready")

		// Streams count against the user's cap, not against a task's (they have none).
		third := e.openChanges(t, e.alice, "", "")
		third.wantEvent(t, "ready")
		e.request(e.alice, "GET", "/api/changes/stream", nil).wantProblem(t, 429)
		third.close()

		// An account added after the stream opened is streamed from its first change when
		// ?accounts is absent (the next poll finds it); a stream of named accounts ignores it.
		later := e.addAccount(e.alice, "later")
		e.changeWriter(t, later.ID).add(t, "INBOX", 1)
		e.changeWriter(t, first.ID).add(t, "INBOX", 1)
		got := map[int64]int{}
		for _, ev := range all.changes(t, 4) {
			got[ev.Change.AccountID]++
		}
		if got[later.ID] != 2 || got[first.ID] != 2 || got[bobs.ID] != 0 {
			t.Fatalf("stream of all accounts got %v", got)
		}
		for _, ev := range only.changes(t, 2) {
			if ev.Change.AccountID != first.ID {
				t.Fatalf("stream of account %d got a change of %d", first.ID, ev.Change.AccountID)
			}
		}

		// Bob's account is not alice's to stream; nor is a malformed list or cursor accepted.
		e.request(e.alice, "GET", fmt.Sprintf("/api/changes/stream?accounts=%d", bobs.ID), nil).wantProblem(t, 404)
		e.request(e.alice, "GET", "/api/changes/stream?accounts=x", nil).wantProblem(t, 400)
		e.request(e.alice, "GET", "/api/changes/stream", nil, "Last-Event-ID", "garbage!").wantProblem(t, 400)
		e.request(user{}, "GET", "/api/changes/stream", nil).wantProblem(t, 401)
	})
}

func TestChangeStreamKeepalivesAndGoneCursor(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		a := e.addAccount(e.alice, "work")
		w := e.changeWriter(t, a.ID)
		w.add(t, "INBOX", 4)

		s := e.openChanges(t, e.alice, "", "")
		s.changes(t, 5)
		s.wantEvent(t, "ready")
		deadline := time.After(5 * time.Second)
		for n := 0; n < 2; {
			select {
			case c := <-s.comments:
				if c == ": keepalive" {
					n++
				}
			case <-deadline:
				t.Fatal("fewer than 2 keepalives in 5 s (KeepAlive is 200 ms)")
			}
		}
		s.close()

		if _, err := e.store.PruneChanges(context.Background(), time.Now().Add(time.Hour), 2); err != nil {
			t.Fatal(err)
		}
		r := e.request(e.alice, "GET", "/api/changes/stream", nil, "Last-Event-ID", cursor{a.ID: 1}.String())
		r.wantProblem(t, 410)
		var p cursorProblemJSON
		r.json(t, &p)
		if p.Type != httpapi.ProblemCursorGone || p.Resume == nil {
			t.Fatalf("gone stream: %s", r.body)
		}
		resumed := e.openChanges(t, e.alice, "", *p.Resume)
		resumed.wantEvent(t, "ready")
	})
}

func TestChangesInOpenAPI(t *testing.T) {
	e := newEnv(t, "sqlite")
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	e.request(user{}, "GET", "/api/openapi.json", nil).want(t, 200).json(t, &doc)
	for _, p := range []string{"/api/accounts/{id}/changes", "/api/changes", "/api/changes/stream"} {
		if doc.Paths[p]["get"] == nil {
			t.Errorf("OpenAPI lacks GET %s", p)
		}
	}
	var kinds []string
	for _, k := range changes.Kinds {
		kinds = append(kinds, string(k))
	}
	if got := doc.Components.Schemas["ChangeJSON"].Properties["kind"].Enum; !slices.Equal(got, kinds) {
		t.Errorf("the kind enum of httpapi.ChangeJSON is %v, want changes.Kinds %v", got, kinds)
	}
	for _, name := range []string{"ChangeMessage", "ChangeFlags", "ChangeMessageGone", "ChangeFolder", "ChangeSync"} {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("OpenAPI lacks the payload schema %s", name)
		}
	}
}

// smallBuffers gives every connection it accepts the smallest send buffer the kernel allows, so
// that a client that does not read blocks the server within a few events.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(1024)
	}
	return c, err
}

// slowChangeStream opens the change stream as u over a connection with small buffers on both
// ends, and returns its events as the test reads them, at the test's pace.
func (e *env) slowChangeStream(t *testing.T, u user, lastID string) (*bufio.Scanner, net.Conn) {
	t.Helper()
	ts := httptest.NewUnstartedServer(e.srv.Handler())
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(ts.Close)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /api/changes/stream HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + u.Token + "\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("slow stream: %v %v", resp, err)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1024), 1<<20)
	return sc, conn
}

// scanEvent reads the next event from sc; ok is false at the end of the stream.
func scanEvent(sc *bufio.Scanner) (ev changeEvent, ok bool) {
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" && ev.Name != "":
			if ev.Name == "change" {
				_ = json.Unmarshal(ev.Data, &ev.Change)
			}
			return ev, true
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data = json.RawMessage(strings.TrimPrefix(line, "data: "))
		}
	}
	return ev, false
}

// A client that takes no data is disconnected once a write waits past StreamWriteTimeout, and
// its stream no longer counts against the user's cap.
func TestChangeStreamDropsAClientThatDoesNotRead(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d, func(c *instance.Config) { c.API.StreamWriteTimeout = 300 * time.Millisecond })
		a := e.addAccount(e.alice, "work")
		sc, _ := e.slowChangeStream(t, e.alice, "")
		if ev, ok := scanEvent(sc); !ok || ev.Name != "ready" {
			t.Fatalf("first event %+v %v, want ready", ev, ok)
		}
		w := e.changeWriter(t, a.ID)
		for range 4 {
			w.add(t, "INBOX", 500) // far more than the buffers between the stream and the test hold
		}
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(e.logs.String(), "change stream disconnected a client that took no data in time") {
			if time.Now().After(deadline) {
				t.Fatal("the stream did not give up on a client that reads nothing")
			}
			time.Sleep(20 * time.Millisecond)
		}
		for e.srv.OpenStreams(e.alice.ID) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the dropped stream still counts against the user's cap")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// What the client reads now ends early: the connection is closed, not held.
		n := 0
		for {
			if _, ok := scanEvent(sc); !ok {
				break
			}
			n++
		}
		if n >= 2000 {
			t.Fatalf("the client still got all %d changes", n)
		}
	})
}

// A client slower than the commits is told so: after it caught up, a stream that falls more
// than StreamMaxLag behind and keeps falling ends with an "overflow" event, whose id resumes
// exactly after the last change it got.
func TestChangeStreamOverflowsForASlowClient(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d, func(c *instance.Config) { c.API.StreamMaxLag = 50 })
		a := e.addAccount(e.alice, "work")
		sc, conn := e.slowChangeStream(t, e.alice, "")
		if ev, ok := scanEvent(sc); !ok || ev.Name != "ready" {
			t.Fatalf("first event %+v %v, want ready", ev, ok)
		}

		stop := make(chan struct{})
		done := make(chan error, 1)
		w := e.changeWriter(t, a.ID)
		go func() { // commits far faster than the client reads
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					done <- nil
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := e.store.CommitBatch(context.Background(), w.lease, task.Progress{}, w.newMessages("INBOX", 50)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		var last, end changeEvent
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			ev, ok := scanEvent(sc)
			if !ok {
				break
			}
			if ev.Name != "change" {
				end = ev
				continue
			}
			if end.Name != "" {
				t.Fatalf("a change after the %q event", end.Name)
			}
			last = ev
			time.Sleep(2 * time.Millisecond)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if end.Name != "overflow" {
			t.Fatalf("the stream ended with %+v, want an overflow event", end)
		}
		var info struct {
			Cursor    string `json:"cursor"`
			AccountID int64  `json:"account_id"`
			Lag       int64  `json:"lag"`
			Detail    string `json:"detail"`
		}
		if err := json.Unmarshal(end.Data, &info); err != nil || end.ID != last.ID || info.Cursor != last.ID ||
			info.AccountID != a.ID || info.Lag <= 50 || !strings.Contains(info.Detail, "Last-Event-ID") {
			t.Fatalf("overflow %+v %s after change %s (id %s): %v", end, end.Data, last.Change.ID, last.ID, err)
		}
		resumed := e.openChanges(t, e.alice, "", end.ID)
		if next := resumed.next(t); next.Name != "change" || next.Change.Seq != last.Change.Seq+1 {
			t.Fatalf("after the overflow the stream resumes with %+v, want change %d", next, last.Change.Seq+1)
		}
	})
}

// A limit smaller than the accounts with changes serves the oldest changes first, so no account
// waits for the others to be read to the end.
func TestChangesSmallLimitServesTheOldestFirst(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		first, second := e.addAccount(e.alice, "first"), e.addAccount(e.alice, "second")
		w1, w2 := e.changeWriter(t, first.ID), e.changeWriter(t, second.ID)
		for range 3 { // alternate, so that the changes of the two interleave in time
			w1.add(t, "INBOX", 1)
			time.Sleep(5 * time.Millisecond)
			w2.add(t, "INBOX", 1)
			time.Sleep(5 * time.Millisecond)
		}
		var order []string
		after := ""
		for range 20 {
			var p changesPage
			e.request(e.alice, "GET", "/api/changes?limit=1&after="+after, nil).want(t, 200).json(t, &p)
			if len(p.Changes) == 0 {
				break
			}
			order, after = append(order, p.Changes[0].ID), p.Next
		}
		all := append(e.logOf(t, first.ID), e.logOf(t, second.ID)...)
		slices.SortStableFunc(all, func(a, b changes.Change) int { return a.At.Compare(b.At) })
		var want []string
		for _, c := range all {
			want = append(want, fmt.Sprintf("%d:%d", c.AccountID, c.Seq))
		}
		if !slices.Equal(order, want) {
			t.Fatalf("pages of one: %v, want the commit order %v", order, want)
		}
	})
}

// cursor is the change feed's multi-account cursor, decoded: account id → last seq seen.
type cursor map[int64]int64

func (c cursor) String() string { return httpapi.FormatCursor(c) }

func (c cursor) clone() cursor { return maps.Clone(c) }

func parseCursor(s string) (cursor, error) { return httpapi.ParseCursor(s) }

// TestWebhookChangeIsTheAPIsChange: a receiver gets a change in exactly the form the API and the
// stream serve it (two types, one for the OpenAPI document, one for deliveries, must not drift).
func TestWebhookChangeIsTheAPIsChange(t *testing.T) {
	for _, c := range []changes.Change{
		changes.New(changes.MessageCreated, "INBOX", 7, changes.Message{UIDValidity: 3, MessageID: "<m@x>", Flags: []string{`\Seen`}, Size: 12}),
		changes.New(changes.SyncFailed, "", 0, changes.Sync{TaskID: "t", State: "failed", Error: "auth"}),
		{Kind: changes.FolderDeleted, Folder: "Old"}, // no payload at all
	} {
		c.AccountID, c.Seq, c.TaskID, c.At = 4, 9, "task-1", time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
		api, err := json.Marshal(httpapi.NewChangeJSON(c))
		if err != nil {
			t.Fatal(err)
		}
		hook, err := json.Marshal(webhook.NewChange(c))
		if err != nil {
			t.Fatal(err)
		}
		if string(api) != string(hook) {
			t.Errorf("%s: the API serves\n%s\nbut a webhook delivers\n%s", c.Kind, api, hook)
		}
	}
}
