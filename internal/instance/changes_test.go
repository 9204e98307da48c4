package instance_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/changes"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// start runs an Instance on the database at dsn until the test ends or stop is called. Its
// change streams poll only once a minute: a change that reaches them sooner came through the
// events bus (and, between instances, the PostgreSQL bridge).
func start(t *testing.T, dsn string) (in *instance.Instance, stop func()) {
	t.Helper()
	in, err := instance.New(instance.Config{
		Store: storetest.OpenDSN(t, dsn, true), DSN: dsn, Key: instancetest.Key(), Lifecycle: instancetest.Lifecycle(),
		Login: instancetest.AcceptAnyLogin{}, Addr: "127.0.0.1:0", NoReaper: true, ShutdownTimeout: 2 * time.Second,
		API: httpapi.Config{Version: "test", PasswordParams: instancetest.CheapParams,
			PollInterval: time.Minute, KeepAlive: time.Minute, MinEventInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := in.Run(ctx); err != nil {
			t.Errorf("instance: %v", err)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			_ = in.Close()
		}
	}
	t.Cleanup(stop)
	return in, stop
}

// token makes an API token for the account's owner.
func token(t *testing.T, s *store.Store, a store.Account) string {
	t.Helper()
	tok, hash := auth.NewToken()
	if _, err := s.CreateToken(context.Background(), a.UserID, hash, "test"); err != nil {
		t.Fatal(err)
	}
	return tok
}

// addMessages commits n new messages to the account's INBOX as one short sync task would,
// starting at uid from.
func addMessages(t *testing.T, in *instance.Instance, accountID int64, from, n int) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := in.Tasks.Start(ctx, accountID, false); err != nil {
		t.Fatal(err)
	}
	tk, ok, err := in.Tasks.Claim(ctx, "test")
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	var msgs []store.Message
	for uid := from; uid < from+n; uid++ {
		msgs = append(msgs, store.Message{UID: uint32(uid), MessageID: fmt.Sprintf("<%d@x>", uid), Subject: "s", Size: 1, Raw: []byte("x")})
	}
	if _, err := in.Store.CommitBatch(ctx, tk.Lease(), task.Progress{}, store.Batch{
		Folder:   store.Folder{AccountID: accountID, Name: "INBOX", Delimiter: "/", UIDValidity: 1, UIDNext: uint32(from + n)},
		Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
		t.Fatal(err)
	}
}

type event struct {
	ID, Name string
	Change   httpapi.ChangeJSON
}

// stream opens GET /api/changes/stream on in after lastID and returns its events.
func stream(t *testing.T, in *instance.Instance, tok, lastID string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", in.URL()+"/api/changes/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("change stream: %v %v", resp, err)
	}
	out := make(chan event, 1000)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && ev.Name != "":
				out <- ev
				ev = event{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && ev.Name == "change":
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.Change)
			}
		}
	}()
	return out
}

// next returns the next event within d.
func next(t *testing.T, evs <-chan event, d time.Duration) event {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
	}
	return event{}
}

// wantSeqs reads change events of the account numbered want, in order, then nothing else.
func wantSeqs(t *testing.T, evs <-chan event, accountID int64, want ...int64) {
	t.Helper()
	for _, seq := range want {
		ev := next(t, evs, 5*time.Second)
		if ev.Name != "change" || ev.Change.AccountID != accountID || ev.Change.Seq != seq || ev.Change.Kind == "" {
			t.Fatalf("event %+v, want change %d of account %d", ev, seq, accountID)
		}
	}
}

// A stream resumes exactly after its Last-Event-ID on a new instance: the changes committed while
// no instance ran come first, then those committed later, each once.
func TestChangeStreamResumesAcrossARestart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		first, stopFirst := start(t, dsn)
		a := storetest.SeedAccount(t, first.Store)
		tok := token(t, first.Store, a)

		evs := stream(t, first, tok, "")
		if ev := next(t, evs, 5*time.Second); ev.Name != "ready" {
			t.Fatalf("first event %+v, want ready", ev)
		}
		addMessages(t, first, a.ID, 1, 3) // folder.created, 3 message.created and sync.succeeded: 1-5
		wantSeqs(t, evs, a.ID, 1, 2)
		ev := next(t, evs, 5*time.Second) // change 3: the client stops here
		if ev.Change.Seq != 3 {
			t.Fatalf("event %+v, want change 3", ev)
		}
		lastID := ev.ID
		stopFirst()

		// Written while no instance serves: the store of the next one is the same database.
		s := storetest.OpenDSN(t, dsn, false)
		if log, err := s.Changes(context.Background(), a.ID, 0, 100); err != nil || len(log) != 5 {
			t.Fatalf("log after the first instance: %d changes, %v", len(log), err)
		}
		second, _ := start(t, dsn)
		addMessages(t, second, a.ID, 4, 2) // 6-8
		resumed := stream(t, second, tok, lastID)
		wantSeqs(t, resumed, a.ID, 4, 5, 6, 7, 8)
		if ev := next(t, resumed, 5*time.Second); ev.Name != "ready" {
			t.Fatalf("after the backlog: %+v, want ready", ev)
		}
		addMessages(t, second, a.ID, 6, 1) // 9-10, woken by the bus (the poll is a minute away)
		wantSeqs(t, resumed, a.ID, 9, 10)
	})
}

// A change committed through instance B reaches a stream served by instance A through the
// PostgreSQL bridge, long before A's next poll.
func TestChangeCommittedOnAnotherInstanceReachesTheStream(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	a, _ := start(t, dsn)
	b, _ := start(t, dsn)
	acct := storetest.SeedAccount(t, a.Store)
	tok := token(t, a.Store, acct)
	evs := stream(t, a, tok, "")
	if ev := next(t, evs, 5*time.Second); ev.Name != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}

	// The bridges connect in the background: commit on B until A hears of it. Whatever A streams
	// is B's log, in order, each change once.
	var seq int64
	uid := 1
	deadline := time.Now().Add(20 * time.Second)
	for seq == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no change committed on B reached the stream on A")
		}
		addMessages(t, b, acct.ID, uid, 1)
		uid++
		select {
		case ev := <-evs:
			if ev.Name != "change" || ev.Change.Seq != 1 || ev.Change.Kind != changes.FolderCreated {
				t.Fatalf("first event from B: %+v", ev)
			}
			seq = 1
		case <-time.After(300 * time.Millisecond):
		}
	}
	head, err := b.Store.ChangeHead(context.Background(), acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	rest := []int64{}
	for n := seq + 1; n <= head.Last; n++ {
		rest = append(rest, n)
	}
	wantSeqs(t, evs, acct.ID, rest...)

	// With the bridges up, a commit on B is on A's stream within a second or two.
	began := time.Now()
	addMessages(t, b, acct.ID, uid, 1)
	wantSeqs(t, evs, acct.ID, head.Last+1)
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("the change took %s to cross instances", took)
	}
}
