package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/changes"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// testActionsIdempotent: many callers with one Idempotency-Key make one action; the key with
// another request is refused.
func testActionsIdempotent(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	n := action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Flags, Key: "k-1",
		Request: action.Request{Messages: []int64{1}, Add: []string{`\Seen`}}}
	const callers = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[int64]int{}
		created int
	)
	for range callers {
		wg.Go(func() {
			a, c, err := e.store.CreateAction(ctx, n)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[a.ID]++
			if c {
				created++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Fatalf("%d callers with one key made actions %v, %d said created; want one action, created once", callers, ids, created)
	}
	other := n
	other.Request.Add = []string{`\Flagged`}
	if _, _, err := e.store.CreateAction(ctx, other); !errors.Is(err, action.ErrKeyReused) {
		t.Fatalf("the key with another request: err = %v, want ErrKeyReused", err)
	}
	// Without a key every request is its own action.
	n.Key = ""
	a1, _, err := e.store.CreateAction(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	a2, _, err := e.store.CreateAction(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if a1.ID == a2.ID {
		t.Fatal("two requests without a key made one action")
	}
	open, err := e.store.OpenActions(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 3 || open[0].ID > open[1].ID || open[0].State != action.Pending {
		t.Fatalf("open actions = %+v, want 3 pending in id order", open)
	}
}

// testActionsFenced: an action is taken, moved and finished only under a live lease; a send
// found submitting becomes unknown, never submitted again; attempts run out.
func testActionsFenced(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	send, _, err := e.store.CreateAction(ctx, action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Send,
		Request: action.Request{Recipients: []string{"a@example.test"}}, Raw: []byte("From: x\r\n\r\nhi\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	// The action's writes beat with the database clock: the hand-moved clock starts from it.
	e.clock.Advance(time.Since(e.clock.Now()))
	e.start(t, acct.ID)
	first := e.claim(t, "w1")
	l := first.Lease()
	taken, err := e.store.TakeAction(ctx, l, task.Progress{}, send.ID)
	if err != nil {
		t.Fatal(err)
	}
	if taken.State != action.Running || taken.Attempts != 1 || taken.TaskID != first.ID {
		t.Fatalf("taken = %+v", taken)
	}
	if err := e.store.MarkSubmitting(ctx, l, task.Progress{}, send.ID); err != nil {
		t.Fatal(err)
	}
	raw, err := e.store.ActionMessage(ctx, send.ID)
	if err != nil || string(raw) != "From: x\r\n\r\nhi\r\n" {
		t.Fatalf("message = %q, %v", raw, err)
	}
	// The worker dies between DATA and the answer; its lease runs out and the task is reaped and
	// claimed again by another worker, which must not send it a second time.
	e.clock.Advance(task.DefaultConfig().HeartbeatTimeout + time.Second)
	e.reap(t)
	second := e.claim(t, "w2")
	if second.Epoch == first.Epoch {
		t.Fatalf("the second claim kept epoch %d", second.Epoch)
	}
	if _, err := e.store.FinishAction(ctx, l, task.Progress{}, send.ID, store.Outcome{State: action.Done}); !errors.Is(err, task.ErrLeaseLost) {
		t.Fatalf("the first worker's finish: err = %v, want ErrLeaseLost", err)
	}
	again, err := e.store.TakeAction(ctx, second.Lease(), task.Progress{}, send.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.State != action.Unknown || again.FinishedAt.IsZero() || again.Error == "" {
		t.Fatalf("a send found submitting = %+v, want unknown with a reason", again)
	}
	if _, err := e.store.TakeAction(ctx, second.Lease(), task.Progress{}, send.ID); !errors.Is(err, action.ErrNotOpen) {
		t.Fatalf("taking an unknown send: err = %v, want ErrNotOpen", err)
	}
	// The owner decides to send it again.
	retried, err := e.store.RetryAction(ctx, send.ID)
	if err != nil || retried.State != action.Pending || retried.Attempts != 0 {
		t.Fatalf("retry = %+v, %v", retried, err)
	}

	// Attempts run out: each take counts, the one past MaxAttempts fails it.
	flags, _, err := e.store.CreateAction(ctx, action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Flags,
		Request: action.Request{Messages: []int64{9}, Add: []string{`\Seen`}}})
	if err != nil {
		t.Fatal(err)
	}
	var last action.Action
	for range action.MaxAttempts + 1 {
		if last, err = e.store.TakeAction(ctx, second.Lease(), task.Progress{}, flags.ID); err != nil {
			t.Fatal(err)
		}
	}
	if last.State != action.Failed || last.Attempts != action.MaxAttempts {
		t.Fatalf("after %d takes: %+v, want failed after %d attempts", action.MaxAttempts+1, last, action.MaxAttempts)
	}
	// A sent send whose copy for Sent keeps failing ends done, never failed: it went out.
	sent, _, err := e.store.CreateAction(ctx, action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Send,
		Request: action.Request{Recipients: []string{"a@example.test"}}, Raw: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.TakeAction(ctx, second.Lease(), task.Progress{}, sent.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.store.MarkSubmitting(ctx, second.Lease(), task.Progress{}, sent.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.store.MarkSent(ctx, second.Lease(), task.Progress{}, sent.ID, "250 ok"); err != nil {
		t.Fatal(err)
	}
	for range action.MaxAttempts {
		if last, err = e.store.TakeAction(ctx, second.Lease(), task.Progress{}, sent.ID); err != nil {
			t.Fatal(err)
		}
	}
	if last.State != action.Done || !strings.HasPrefix(last.Error, "sent;") || last.Result.SMTP != "250 ok" {
		t.Fatalf("a sent send out of attempts = %+v, want done saying it was sent", last)
	}
	if _, err := e.store.CancelAction(ctx, flags.ID); !errors.Is(err, action.ErrNotOpen) {
		t.Fatalf("cancelling a failed action: err = %v, want ErrNotOpen", err)
	}
}

// testActionsLocalEdits: finishing an action writes its local edits (flags, a move that keeps the
// row, a removal) with their changes, in one fenced transaction.
func testActionsLocalEdits(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	tk := e.claim(t, "w")
	l := tk.Lease()
	msg := func(uid uint32) store.Message {
		return store.Message{UID: uid, MessageID: "<m" + string(rune('0'+uid)) + "@x>", Subject: "s", Raw: []byte("raw"),
			Flags: []string{`\Seen`}}
	}
	inbox := store.Folder{AccountID: acct.ID, Name: "INBOX", UIDValidity: 1, UIDNext: 4, Messages: 3}
	archive := store.Folder{AccountID: acct.ID, Name: "Archive", UIDValidity: 5, UIDNext: 10}
	inboxID, err := e.store.CommitBatch(ctx, l, task.Progress{}, store.Batch{Folder: inbox, Messages: []store.Message{msg(1), msg(2), msg(3)}})
	if err != nil {
		t.Fatal(err)
	}
	archiveID, err := e.store.CommitBatch(ctx, l, task.Progress{}, store.Batch{Folder: archive})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.store.FolderMessages(ctx, inboxID)
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored = %v, %v", stored, err)
	}
	ids := []int64{stored[0].ID, stored[1].ID, stored[2].ID}
	refs, err := e.store.MessageRefs(ctx, acct.ID, append(ids, 999999))
	if err != nil || len(refs) != 3 || refs[ids[1]].UID != 2 || refs[ids[1]].Folder != "INBOX" || refs[ids[1]].UIDValidity != 1 {
		t.Fatalf("refs = %+v, %v", refs, err)
	}
	a, _, err := e.store.CreateAction(ctx, action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Move,
		Request: action.Request{Messages: ids, Folder: "Archive"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.TakeAction(ctx, l, task.Progress{}, a.ID); err != nil {
		t.Fatal(err)
	}
	head, err := e.store.ChangeHead(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	done, err := e.store.FinishAction(ctx, l, task.Progress{}, a.ID, store.Outcome{State: action.Done,
		Result: action.Result{Applied: ids[:2]},
		Local: []store.LocalEdit{
			{Message: ids[0], MovedTo: "Archive", UID: 12, UIDValidity: 5}, // followed
			{Message: ids[1], Flags: []string{`\Seen`, `\Flagged`}},        // flags only
			{Message: ids[2], MovedTo: "Archive", UID: 13, UIDValidity: 6}, // another UIDVALIDITY: removed
		}})
	if err != nil {
		t.Fatal(err)
	}
	if done.State != action.Done || done.FinishedAt.IsZero() || !slices.Equal(done.Result.Applied, ids[:2]) {
		t.Fatalf("done = %+v", done)
	}
	moved, err := e.store.FolderMessages(ctx, archiveID)
	if err != nil || len(moved) != 1 || moved[0].ID != ids[0] || moved[0].UID != 12 || string(moved[0].Raw) != "raw" {
		t.Fatalf("archive holds %+v, %v; want message %d as uid 12 with its bytes", moved, err, ids[0])
	}
	left, err := e.store.FolderMessages(ctx, inboxID)
	if err != nil || len(left) != 1 || left[0].ID != ids[1] || !slices.Equal(left[0].Flags, []string{`\Seen`, `\Flagged`}) {
		t.Fatalf("inbox holds %+v, %v", left, err)
	}
	log, err := e.store.Changes(ctx, acct.ID, head.Last, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range log {
		kinds = append(kinds, string(c.Kind)+" "+c.Folder)
	}
	want := []string{"message.deleted INBOX", "message.created Archive", "message.updated INBOX", "message.deleted INBOX"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("changes = %v, want %v", kinds, want)
	}
	if log[1].UID != 12 || log[0].Kind != changes.MessageDeleted {
		t.Fatalf("changes = %+v", log)
	}
	uids, err := e.store.StoredUIDsFrom(ctx, archiveID, 10)
	if err != nil || !slices.Equal(uids, []uint32{12}) {
		t.Fatalf("uids from the checkpoint = %v, %v", uids, err)
	}
	// An account with an action due and no task is listed; with a live task, not.
	if _, _, err := e.store.CreateAction(ctx, action.New{AccountID: acct.ID, UserID: acct.UserID, Kind: action.Flags,
		Request: action.Request{Messages: ids[1:2], Add: []string{"$X"}}}); err != nil {
		t.Fatal(err)
	}
	due, err := e.store.AccountsWithDueActions(ctx, time.Time{}, time.Minute)
	if err != nil || len(due) != 0 {
		t.Fatalf("due with a live task = %v, %v", due, err)
	}
	if _, err := e.tasks.Finish(ctx, l, task.Succeeded, task.Progress{}, ""); err != nil {
		t.Fatal(err)
	}
	due, err = e.store.AccountsWithDueActions(ctx, time.Time{}, time.Minute)
	if err != nil || !slices.Equal(due, []int64{acct.ID}) {
		t.Fatalf("due = %v, %v; want [%d]", due, err, acct.ID)
	}
	// A task that failed a moment ago holds the account back for failedWait.
	e.start(t, acct.ID)
	failing := e.claim(t, "w2")
	if _, err := e.tasks.Finish(ctx, failing.Lease(), task.Failed, task.Progress{}, "auth error: wrong password"); err != nil {
		t.Fatal(err)
	}
	if due, err = e.store.AccountsWithDueActions(ctx, e.clock.Now(), time.Minute); err != nil || len(due) != 0 {
		t.Fatalf("due just after a failed task = %v, %v; want none", due, err)
	}
	if due, err = e.store.AccountsWithDueActions(ctx, e.clock.Now().Add(2*time.Minute), time.Minute); err != nil || !slices.Equal(due, []int64{acct.ID}) {
		t.Fatalf("due a minute after a failed task = %v, %v; want [%d]", due, err, acct.ID)
	}
}
