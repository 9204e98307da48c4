package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// testChangeLog writes the batches a sync writes and checks that the log says exactly what
// changed, numbered 1, 2, 3, ... in order; that a refused batch leaves no change; and that a
// pruned cursor is gone.
func testChangeLog(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	tk := e.claim(t, "w")
	msg := func(uid uint32, flags ...string) store.Message {
		return store.Message{UID: uid, MessageID: fmt.Sprintf("<%d@x>", uid), Subject: "s", From: "a@x",
			Flags: flags, Size: 3, Raw: []byte("raw")}
	}
	inbox := store.Folder{AccountID: acct.ID, Name: "INBOX", Delimiter: "/", UIDValidity: 7, UIDNext: 4}
	commit := func(b store.Batch) {
		t.Helper()
		if _, err := e.store.CommitBatch(ctx, tk.Lease(), task.Progress{}, b); err != nil {
			t.Fatal(err)
		}
	}
	commit(store.Batch{Folder: inbox, Messages: []store.Message{msg(1), msg(2, `\Seen`), msg(3)}})
	commit(store.Batch{Folder: inbox,
		Messages: []store.Message{msg(2, `\Seen`)}, // stored already, same flags: nothing
		Flags: []store.FlagChange{{UID: 1, Flags: []string{`\Flagged`}}, {UID: 3, Flags: nil}, // 3 unchanged
			{UID: 9, Flags: []string{`\Seen`}}}, // never stored: nothing
		Deleted: []uint32{2, 8}}) // 8 never stored: nothing
	inbox.UIDValidity = 8
	commit(store.Batch{Folder: inbox, Reset: true, Messages: []store.Message{msg(1)}})
	if err := e.store.DeleteFolder(ctx, tk.Lease(), task.Progress{}, acct.ID, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteFolder(ctx, tk.Lease(), task.Progress{}, acct.ID, "Never"); err != nil {
		t.Fatal(err)
	}

	// A zombie's batch (a lease of an earlier epoch) is refused and writes no change.
	zombie := tk.Lease()
	zombie.Epoch--
	if _, err := e.store.CommitBatch(ctx, zombie, task.Progress{}, store.Batch{Folder: inbox, Messages: []store.Message{msg(5)}}); !errors.Is(err, task.ErrLeaseLost) {
		t.Fatalf("zombie batch: %v, want ErrLeaseLost", err)
	}

	got, err := e.store.Changes(ctx, acct.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"folder.created INBOX 0", "message.created INBOX 1", "message.created INBOX 2", "message.created INBOX 3",
		"message.updated INBOX 1", "message.deleted INBOX 2",
		"folder.reset INBOX 0", "message.created INBOX 1",
		"folder.deleted INBOX 0",
	}
	var lines []string
	for i, c := range got {
		if c.Seq != int64(i+1) || c.AccountID != acct.ID || c.TaskID != tk.ID || c.At.IsZero() {
			t.Errorf("change %d: seq %d account %d task %q at %v", i, c.Seq, c.AccountID, c.TaskID, c.At)
		}
		lines = append(lines, fmt.Sprintf("%s %s %d", c.Kind, c.Folder, c.UID))
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("change log:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if d := string(got[4].Data); d != `{"old_flags":[],"flags":["\\Flagged"]}` {
		t.Errorf("message.updated payload = %s", d)
	}
	if d := string(got[6].Data); d != `{"uidvalidity":8,"old_uidvalidity":7,"dropped":2}` {
		t.Errorf("folder.reset payload = %s", d)
	}

	// Cursors: a page, the rest, nothing after the head.
	page, err := e.store.Changes(ctx, acct.ID, 2, 3)
	if err != nil || len(page) != 3 || page[0].Seq != 3 || page[2].Seq != 5 {
		t.Fatalf("page after 2: %v %+v", err, page)
	}
	if rest, err := e.store.Changes(ctx, acct.ID, 9, 10); err != nil || len(rest) != 0 {
		t.Fatalf("after the head: %v %+v", err, rest)
	}

	// Pruning removes a prefix and raises the floor: a cursor below it is gone, one at it is not.
	n, err := e.store.PruneChanges(ctx, time.Now().Add(time.Hour), 4)
	if err != nil || n != 4 {
		t.Fatalf("prune: %d, %v (want 4)", n, err)
	}
	if head, err := e.store.ChangeHead(ctx, acct.ID); err != nil || head != (store.ChangeHead{Last: 9, Floor: 4}) {
		t.Fatalf("head after prune: %+v %v", head, err)
	}
	if _, err := e.store.Changes(ctx, acct.ID, 3, 10); !errors.Is(err, changes.ErrGone) {
		t.Fatalf("cursor below the floor: %v, want ErrGone", err)
	}
	if rest, err := e.store.Changes(ctx, acct.ID, 4, 10); err != nil || len(rest) != 5 || rest[0].Seq != 5 {
		t.Fatalf("cursor at the floor: %v %+v", err, rest)
	}
}

// testTaskEndsInChangeLog ends tasks every way a task can end and checks that each end wrote
// exactly one sync.* change in its own transaction: the worker's Finish (succeeded, failed,
// cancelled), a reap that fails or cancels, a Start that fails a dead task, a cancel of a queued
// task. A reap that re-queues, a cancel request to a running task and a zombie's Finish write
// none.
func testTaskEndsInChangeLog(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	log := func(acct int64) []string {
		t.Helper()
		got, err := e.store.Changes(ctx, acct, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for i, c := range got {
			var p changes.Sync
			if err := json.Unmarshal(c.Data, &p); err != nil {
				t.Fatal(err)
			}
			if c.Seq != int64(i+1) || c.TaskID != p.TaskID {
				t.Errorf("change %d: seq %d, task %q, payload's task %q", i, c.Seq, c.TaskID, p.TaskID)
			}
			lines = append(lines, fmt.Sprintf("%s %s %d/%d/%d %q", c.Kind, p.State, p.New, p.Updated, p.Deleted, p.Error))
		}
		return lines
	}
	want := func(acct int64, lines ...string) {
		t.Helper()
		if got := log(acct); strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Fatalf("change log of account %d:\n%s\nwant:\n%s", acct, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}

	// The worker's Finish, with its counts; a zombie's Finish is refused and says nothing.
	a := SeedAccount(t, e.store).ID
	e.start(t, a)
	tk := e.claim(t, "w")
	zombie := tk.Lease()
	zombie.Epoch--
	_, err := e.tasks.Finish(ctx, zombie, task.Failed, task.Progress{}, "zombie")
	wantLeaseLost(t, "zombie finish", err)
	if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{New: 3, Updated: 2, Deleted: 1}, ""); err != nil {
		t.Fatal(err)
	}
	_, err = e.tasks.Finish(ctx, tk.Lease(), task.Failed, task.Progress{}, "twice")
	wantLeaseLost(t, "second finish", err)
	e.start(t, a)
	tk = e.claim(t, "w")
	if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Failed, task.Progress{New: 1}, "auth error"); err != nil {
		t.Fatal(err)
	}
	e.start(t, a)
	tk = e.claim(t, "w")
	if _, err := e.tasks.Cancel(ctx, tk.ID); err != nil { // a running task: only asked to stop
		t.Fatal(err)
	}
	want(a, `sync.succeeded succeeded 3/2/1 ""`, `sync.failed failed 1/0/0 "auth error"`)
	if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Cancelled, task.Progress{}, "cancelled"); err != nil {
		t.Fatal(err)
	}
	want(a, `sync.succeeded succeeded 3/2/1 ""`, `sync.failed failed 1/0/0 "auth error"`, `sync.failed cancelled 0/0/0 "cancelled"`)

	// A queued task cancelled: ended, so said.
	b := SeedAccount(t, e.store).ID
	q := e.start(t, b)
	if _, err := e.tasks.Cancel(ctx, q.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tasks.Cancel(ctx, q.ID); err != nil { // already ended: nothing more
		t.Fatal(err)
	}
	want(b, `sync.failed cancelled 0/0/0 "cancelled before it started"`)

	// The reaper: a re-queue says nothing (the sync goes on); the last attempt's death fails the
	// task, and a dead task that was asked to stop is cancelled.
	c := SeedAccount(t, e.store).ID
	ct := e.start(t, c)
	for range e.tasks.Config().MaxAttempts {
		e.claim(t, "doomed")
		e.clock.Advance(61 * time.Second)
		e.reap(t)
		if got := log(c); len(got) > 0 && e.get(t, ct.ID).State.Active() {
			t.Fatalf("a re-queue wrote %v", got)
		}
	}
	if got := log(c); len(got) != 1 || !strings.HasPrefix(got[0], "sync.failed failed 0/0/0 \"the worker stopped sending heartbeats on every attempt") {
		t.Fatalf("change log after the last death: %q", got)
	}
	d := SeedAccount(t, e.store).ID
	e.start(t, d)
	tk = e.claim(t, "w")
	if _, err := e.tasks.Cancel(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(61 * time.Second)
	e.reap(t)
	want(d, `sync.failed cancelled 0/0/0 "cancelled; the worker had stopped sending heartbeats"`)

	// A Start that finds the account's task dead fails it in its own transaction, and says so.
	f := SeedAccount(t, e.store).ID
	e.start(t, f)
	e.claim(t, "crashed")
	e.clock.Advance(61 * time.Second)
	if _, created, err := e.tasks.Start(ctx, f, false); err != nil || !created {
		t.Fatalf("start over a dead task: created %v, %v", created, err)
	}
	if got := log(f); len(got) != 1 || !strings.HasPrefix(got[0], `sync.failed failed 0/0/0 "abandoned: the worker stopped sending heartbeats`) {
		t.Fatalf("change log after Start replaced a dead task: %q", got)
	}
}

// testRenameChanges renames folders in the store and overwrites a stored UID with another
// message, and checks the changes: folder.renamed keeping the messages, a rename onto a stored
// name deleting that folder first, nothing for a zombie's rename or a folder not stored; and a
// replaced message as a deletion then a creation.
func testRenameChanges(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	tk := e.claim(t, "w")
	msg := func(uid uint32, id string, size int64) store.Message {
		return store.Message{UID: uid, MessageID: id, Size: size, Raw: []byte("raw")}
	}
	for _, b := range []store.Batch{
		{Folder: store.Folder{AccountID: acct.ID, Name: "A", UIDValidity: 7, UIDNext: 3, MailboxID: "a1"},
			Messages: []store.Message{msg(1, "<1@x>", 3), msg(2, "<2@x>", 3)}},
		{Folder: store.Folder{AccountID: acct.ID, Name: "B", UIDValidity: 9, UIDNext: 2, MailboxID: "b2"},
			Messages: []store.Message{msg(1, "<b@x>", 3)}},
	} {
		if _, err := e.store.CommitBatch(ctx, tk.Lease(), task.Progress{}, b); err != nil {
			t.Fatal(err)
		}
	}
	rename := func(l task.Lease, from, to string) error {
		return e.store.RenameFolder(ctx, l, task.Progress{}, acct.ID, from, to)
	}
	zombie := tk.Lease()
	zombie.Epoch--
	wantLeaseLost(t, "zombie rename", rename(zombie, "A", "Z"))
	if err := rename(tk.Lease(), "Never", "Z"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rename of a folder not stored: %v, want ErrNotFound", err)
	}
	if err := rename(tk.Lease(), "A", "C"); err != nil {
		t.Fatal(err)
	}
	if err := rename(tk.Lease(), "C", "B"); err != nil { // B is another folder: deleted first
		t.Fatal(err)
	}
	// force_full found another message under UID 2: it replaces the row.
	if _, err := e.store.CommitBatch(ctx, tk.Lease(), task.Progress{}, store.Batch{
		Folder:   store.Folder{AccountID: acct.ID, Name: "B", UIDValidity: 7, UIDNext: 3, MailboxID: "a1"},
		Messages: []store.Message{msg(1, "<1@x>", 3), msg(2, "<other@x>", 5)}}); err != nil {
		t.Fatal(err)
	}

	got, err := e.store.Changes(ctx, acct.ID, 4, 100) // after folder.created A, its 2 messages, folder.created B
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, fmt.Sprintf("%s %s %d %s", c.Kind, c.Folder, c.UID, c.Data))
	}
	want := []string{
		"message.created B 1 " + `{"uidvalidity":9,"message_id":"\u003cb@x\u003e","flags":[],"size":3}`,
		`folder.renamed C 0 {"uidvalidity":7,"old_name":"A"}`,
		`folder.deleted B 0 {"dropped":1}`,
		`folder.renamed B 0 {"uidvalidity":7,"old_name":"C"}`,
		`message.deleted B 2 {"message_id":"\u003c2@x\u003e"}`,
		"message.created B 2 " + `{"uidvalidity":7,"message_id":"\u003cother@x\u003e","flags":[],"size":5}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes after 4:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	folders, err := e.store.Folders(ctx, acct.ID)
	if err != nil || len(folders) != 1 || folders[0].Name != "B" || folders[0].UIDValidity != 7 {
		t.Fatalf("folders after the renames: %+v %v", folders, err)
	}
	if uids, err := e.store.FolderUIDs(ctx, folders[0].ID); err != nil || len(uids) != 2 {
		t.Fatalf("the renamed folder's messages: %+v %v", uids, err)
	}

	// One UID twice in a batch (the last word wins, lastPerUID): one change, the last's.
	if _, err := e.store.CommitBatch(ctx, tk.Lease(), task.Progress{}, store.Batch{
		Folder:   store.Folder{AccountID: acct.ID, Name: "B", UIDValidity: 7, UIDNext: 8, MailboxID: "a1"},
		Messages: []store.Message{msg(7, "<7a@x>", 1), msg(7, "<7b@x>", 2)}}); err != nil {
		t.Fatal(err)
	}
	last, err := e.store.Changes(ctx, acct.ID, 10, 100)
	if err != nil || len(last) != 1 || last[0].Kind != changes.MessageCreated || last[0].UID != 7 ||
		!strings.Contains(string(last[0].Data), "7b@x") {
		t.Fatalf("a UID twice in a batch: %v %+v", err, last)
	}
}
