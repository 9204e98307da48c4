package httpapi_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/imaptest"
	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// mailbox is a Dovecot user with INBOX, Archive and Trash, and an instance whose workers run the
// real sync engine against it.
type mailbox struct {
	e       *env
	dovecot *imaptest.Dovecot
	user    imaptest.User
	server  *imaptest.Client
	account httpapi.AccountJSON
	// fetched counts the bodies downloaded, by folder.
	mu      sync.Mutex
	fetched map[string]int
	// hold, while set, keeps the next task from starting its run until release is closed.
	hold    atomic.Bool
	release chan struct{}
	// afterRun, when set, is called once a task's run is over, before its task ends.
	afterRun atomic.Pointer[func()]
}

func newMailbox(t *testing.T, dialect string, subjects ...string) *mailbox {
	t.Helper()
	mb := &mailbox{fetched: map[string]int{}, release: make(chan struct{})}
	mb.dovecot = imaptest.StartDovecot(t)
	mb.user = mb.dovecot.AddUser(t, "carol", imapPassword)
	mb.server = mb.dovecot.Client(t, mb.user)
	mb.server.CreateFolder("Archive")
	mb.server.CreateFolder("Trash")
	for i, s := range subjects {
		mb.server.AddMessage("INBOX", testMessage(i, s), `\Seen`)
	}
	mb.e = newEnv(t, dialect, func(c *instance.Config) {
		engine := syncer.New(c.Store, boxOf(t, c), syncer.Options{Destinations: allowLoopback(t),
			Fetched: func(folder string, _ uint32) {
				mb.mu.Lock()
				mb.fetched[folder]++
				mb.mu.Unlock()
			}})
		c.Login = engine // the real IMAP (and SMTP) login checks
		withBody(c, func(ctx context.Context, run *worker.Run) error {
			if mb.hold.Load() {
				<-mb.release
			}
			err := engine.Run(ctx, run)
			if f := mb.afterRun.Swap(nil); f != nil {
				(*f)()
			}
			return err
		})
		c.ActionInterval = time.Hour // only a task's end starts the task of actions left waiting
		c.Lifecycle.HeartbeatInterval, c.Lifecycle.HeartbeatTimeout, c.Lifecycle.SelfFence = 500*time.Millisecond, 10*time.Second, 5*time.Second
	})
	mb.e.runWorkers(t)
	mb.e.request(mb.e.alice, "POST", "/api/accounts", map[string]any{
		"name": "dovecot", "imap_host": mb.dovecot.Host(), "imap_port": mb.dovecot.Port(), "tls_mode": "none",
		"login": mb.user.Login, "password": mb.user.Password,
		"tls_skip_verify": true, // for the test SMTP server's certificate
	}).want(t, 201).json(t, &mb.account)
	if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
		t.Fatalf("first sync: %s %s", tk.State, tk.Error)
	}
	return mb
}

func testMessage(i int, subject string) []byte {
	return []byte(fmt.Sprintf("From: Dora <dora@example.test>\r\nTo: carol@example.test\r\nSubject: %s\r\n"+
		"Message-ID: <m%d@example.test>\r\nDate: Mon, 2 Mar 2026 10:0%d:00 +0000\r\n\r\nBody of %s.\r\n", subject, i, i%10, subject))
}

// syncUntilStored syncs until the store lists folder: a Sync now may join a task that listed the
// folders before the test changed them, so one sync is not always enough.
func (mb *mailbox) syncUntilStored(t *testing.T, folder string) {
	t.Helper()
	for range 5 {
		if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
			t.Fatalf("sync: %s %s", tk.State, tk.Error)
		}
		var folders []httpapi.FolderJSON
		mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/accounts/%d/folders", mb.account.ID), nil).want(t, 200).json(t, &folders)
		for _, f := range folders {
			if f.Name == folder {
				return
			}
		}
	}
	t.Fatalf("five syncs did not store the folder %q", folder)
}

// bySubject is the account's stored messages (as the API lists them) by subject.
func (mb *mailbox) bySubject(t *testing.T) map[string]httpapi.MessageJSON {
	t.Helper()
	out := map[string]httpapi.MessageJSON{}
	for _, m := range mb.e.listMessages(t, mb.account.ID, "?limit=200") {
		out[m.Subject] = m
	}
	return out
}

// waitAction polls the action until it is final, at most 30 s.
func (mb *mailbox) waitAction(t *testing.T, id int64) httpapi.ActionJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var a httpapi.ActionJSON
		mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/actions/%d", id), nil).want(t, 200).json(t, &a)
		switch a.State {
		case "done", "failed", "conflict", "unknown", "cancelled":
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("action %d still %s after 30 s: %+v", id, a.State, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (mb *mailbox) act(t *testing.T, method, path string, body any) httpapi.ActionJSON {
	t.Helper()
	var a httpapi.ActionJSON
	mb.e.request(mb.e.alice, method, path, body).want(t, 202).json(t, &a)
	return a
}

// serverState is every folder's messages on the server as "subject flags", sorted.
func (mb *mailbox) serverState(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, folder := range []string{"INBOX", "Archive", "Trash"} {
		out[folder] = []string{}
		for _, m := range mb.server.Messages(folder) {
			out[folder] = append(out[folder], m.Subject+" "+strings.Join(m.Flags, ","))
		}
		sort.Strings(out[folder])
	}
	return out
}

// storeState is the same of the store, as the API lists it.
func (mb *mailbox) storeState(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, folder := range []string{"INBOX", "Archive", "Trash"} {
		out[folder] = []string{}
		for _, m := range mb.e.listMessages(t, mb.account.ID, fmt.Sprintf("?limit=200&folder=%d", mb.e.folderID(t, mb.account.ID, folder))) {
			flags := slices.Clone(m.Flags)
			slices.Sort(flags)
			out[folder] = append(out[folder], m.Subject+" "+strings.Join(flags, ","))
		}
		sort.Strings(out[folder])
	}
	return out
}

func (mb *mailbox) wantSame(t *testing.T, want map[string][]string) {
	t.Helper()
	server, stored := mb.serverState(t), mb.storeState(t)
	if fmt.Sprint(server) != fmt.Sprint(want) {
		t.Fatalf("the server holds\n%v\nwant\n%v", server, want)
	}
	if fmt.Sprint(stored) != fmt.Sprint(server) {
		t.Fatalf("the store holds\n%v\nthe server\n%v", stored, server)
	}
}

// TestActionsOnDovecot: each action changes the server exactly as asked; the store shows it at
// once (the moved messages are not downloaded again) and still equals the server after a sync.
func TestActionsOnDovecot(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		mb := newMailbox(t, dialect, "one", "two", "three", "four", "five")
		m := mb.bySubject(t)
		before := map[string]int{}
		mb.mu.Lock()
		for k, v := range mb.fetched {
			before[k] = v
		}
		mb.mu.Unlock()

		flags := mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/flags", m["one"].ID), map[string]any{"add": []string{`\Flagged`}, "remove": []string{`\Seen`}})
		move := mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/move", m["two"].ID), map[string]any{"folder": "Archive"})
		del := mb.act(t, "DELETE", fmt.Sprintf("/api/messages/%d", m["three"].ID), nil)
		bulk := mb.act(t, "POST", fmt.Sprintf("/api/accounts/%d/messages/flags", mb.account.ID),
			map[string]any{"messages": []int64{m["four"].ID, m["five"].ID}, "add": []string{"$Label1"}})
		for _, a := range []httpapi.ActionJSON{flags, move, del, bulk} {
			if got := mb.waitAction(t, a.ID); got.State != "done" || got.Error != "" {
				t.Fatalf("action %d (%s): %s %q", a.ID, a.Kind, got.State, got.Error)
			}
		}
		want := map[string][]string{
			"INBOX":   {"five $Label1,\\Seen", "four $Label1,\\Seen", "one \\Flagged"},
			"Archive": {"two \\Seen"},
			"Trash":   {"three \\Seen"},
		}
		mb.wantSame(t, want)
		// The moved message kept its id in the store.
		var moved httpapi.MessageJSON
		mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/messages/%d", m["two"].ID), nil).want(t, 200).json(t, &moved)
		if moved.FolderID != mb.e.folderID(t, mb.account.ID, "Archive") || len(moved.Pending) != 0 {
			t.Fatalf("the moved message = %+v", moved)
		}
		if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
			t.Fatalf("sync: %s %s", tk.State, tk.Error)
		}
		mb.wantSame(t, want)
		mb.mu.Lock()
		again := mb.fetched["Archive"] + mb.fetched["Trash"] - before["Archive"] - before["Trash"]
		mb.mu.Unlock()
		if again != 0 {
			t.Fatalf("%d moved messages were downloaded again", again)
		}

		// Deleting in Trash expunges; permanent=true expunges anywhere.
		gone := mb.act(t, "DELETE", fmt.Sprintf("/api/messages/%d", m["three"].ID), nil)
		perm := mb.act(t, "DELETE", fmt.Sprintf("/api/messages/%d?permanent=true", m["four"].ID), nil)
		for _, a := range []httpapi.ActionJSON{gone, perm} {
			if got := mb.waitAction(t, a.ID); got.State != "done" {
				t.Fatalf("action %d (%s): %s %q", a.ID, a.Kind, got.State, got.Error)
			}
		}
		want = map[string][]string{
			"INBOX":   {"five $Label1,\\Seen", "one \\Flagged"},
			"Archive": {"two \\Seen"},
			"Trash":   {},
		}
		mb.wantSame(t, want)

		// A folder the server does not have fails the action in words, and nothing moves.
		mb.server.CreateFolder("Gone")
		mb.syncUntilStored(t, "Gone")
		mb.server.DeleteFolder("Gone")
		bad := mb.waitAction(t, mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/move", m["five"].ID), map[string]any{"folder": "Gone"}).ID)
		if bad.State != "failed" || !strings.Contains(bad.Error, "does not exist") {
			t.Fatalf("a move to a folder gone from the server: %s %q", bad.State, bad.Error)
		}
		mb.wantSame(t, want)
	})
}

// TestActionsKeepConcurrentChanges: while actions wait, another client changes the same
// messages' flags. Deltas keep both changes; a flag the other client changed is left as it made
// it and reported (CONDSTORE UNCHANGEDSINCE), not overwritten.
func TestActionsKeepConcurrentChanges(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		mb := newMailbox(t, dialect, "one", "two")
		m := mb.bySubject(t)
		uid := map[string]uint32{}
		for _, sm := range mb.server.Messages("INBOX") {
			uid[sm.Subject] = sm.UID
		}
		mb.hold.Store(true) // the actions' task waits until the phone has made its changes
		read := mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/flags", m["one"].ID), map[string]any{"add": []string{`\Flagged`}})
		unread := mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/flags", m["two"].ID), map[string]any{"remove": []string{`\Seen`}, "add": []string{"$Work"}})
		// The phone: answers "one"; marks "two" unread itself and flags it.
		mb.server.AddFlags("INBOX", uid["one"], `\Answered`)
		mb.server.SetFlags("INBOX", uid["two"], `\Flagged`)
		// Meanwhile reads show the actions' result.
		listed := mb.bySubject(t)
		if !slices.Contains(listed["one"].Flags, `\Flagged`) || len(listed["one"].Pending) != 1 {
			t.Fatalf("a pending flag action does not show: %+v", listed["one"])
		}
		mb.hold.Store(false)
		close(mb.release)

		got := mb.waitAction(t, read.ID)
		if got.State != "done" || len(got.Result.Conflict) != 1 || len(got.Result.Conflict[0].Kept) != 0 {
			t.Fatalf("a delta beside another client's change: %s %q %+v", got.State, got.Error, got.Result)
		}
		got = mb.waitAction(t, unread.ID)
		if got.State != "conflict" || len(got.Result.Conflict) != 1 || !slices.Equal(got.Result.Conflict[0].Kept, []string{`\Seen`}) {
			t.Fatalf("an action on a flag another client changed: %s %q %+v", got.State, got.Error, got.Result)
		}
		if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
			t.Fatalf("sync: %s %s", tk.State, tk.Error)
		}
		mb.wantSame(t, map[string][]string{
			"INBOX":   {"one \\Answered,\\Flagged,\\Seen", "two $Work,\\Flagged"},
			"Archive": {},
			"Trash":   {},
		})
	})
}

// TestActionAfterTheLastPushGetsATask: an action asked for while the account's task is past its
// last push joins that task, which ends without it; the task's end starts the next task at once
// (the instance's periodic look is an hour away here), so the action does not wait.
func TestActionAfterTheLastPushGetsATask(t *testing.T) {
	mb := newMailbox(t, "sqlite", "one")
	m := mb.bySubject(t)
	var late httpapi.ActionJSON
	joined := make(chan string, 1)
	f := func() {
		late = mb.act(t, "POST", fmt.Sprintf("/api/messages/%d/flags", m["one"].ID), map[string]any{"add": []string{`\Flagged`}})
		var tk httpapi.TaskJSON
		mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/accounts/%d/sync", mb.account.ID), nil).want(t, 200).json(t, &tk)
		joined <- string(tk.State)
	}
	mb.afterRun.Store(&f)
	mb.e.syncToEnd(t, mb.e.alice, mb.account.ID)
	if state := <-joined; state != "running" {
		t.Fatalf("the late action's task was %s, want the running one it joined", state)
	}
	began := time.Now()
	got := mb.waitAction(t, late.ID)
	if got.State != "done" {
		t.Fatalf("the late action: %s %q", got.State, got.Error)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("the late action took %v after its task ended", took)
	}
}
