package storetest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// testMailBatches writes batches as the syncer does (new messages, flags, deletions, a reset) and
// reads them back with every read method.
func testMailBatches(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	lease := e.claim(t, "w").Lease()
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	raw := func(i int) []byte { return []byte{'r', byte('0' + i), 0, 0xff, '\r', '\n'} } // binary-safe
	msg := func(uid uint32) store.Message {
		return store.Message{UID: uid, MessageID: "id@x", Subject: "s", From: "a@x", To: []string{"b@x", "c@x"},
			Date: date, InternalDate: date.Add(time.Minute), Flags: []string{`\Seen`}, Size: 6, Snippet: "sn",
			BodyText: "body", Raw: raw(int(uid)), ParseError: ""}
	}
	folder := store.Folder{AccountID: acct.ID, Name: "Données", Delimiter: ".", Attributes: []string{`\HasNoChildren`},
		UIDValidity: 7, UIDNext: 4, HighestModSeq: 9, Messages: 3, MailboxID: "F2212ea87-6097"}
	commit := func(b store.Batch) int64 {
		t.Helper()
		id, err := e.store.CommitBatch(ctx, lease, task.Progress{}, b)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	id := commit(store.Batch{Folder: folder, Messages: []store.Message{msg(1), msg(2), msg(3)}})
	folder.HighestModSeq = 10
	if again := commit(store.Batch{Folder: folder, Flags: []store.FlagChange{{UID: 2, Flags: []string{`\Flagged`, "$X"}}},
		Deleted: []uint32{3}}); again != id {
		t.Fatalf("the folder's id changed from %d to %d", id, again)
	}

	folders, err := e.store.Folders(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(folders) != 1 || folders[0].Name != "Données" || folders[0].HighestModSeq != 10 || folders[0].UIDNext != 4 ||
		folders[0].Delimiter != "." || !slices.Equal(folders[0].Attributes, folder.Attributes) || folders[0].MailboxID != "F2212ea87-6097" {
		t.Fatalf("folders = %+v", folders)
	}
	msgs, err := e.store.FolderMessages(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 2 {
		t.Fatalf("messages after delete: %+v", msgs)
	}
	want := msg(1)
	got := msgs[0]
	if !bytes.Equal(got.Raw, want.Raw) || !got.Date.Equal(want.Date) || !got.InternalDate.Equal(want.InternalDate) ||
		!slices.Equal(got.To, want.To) || got.Subject != want.Subject || got.Size != want.Size || got.BodyText != want.BodyText {
		t.Fatalf("message 1 = %+v, want %+v", got, want)
	}
	if one, err := e.store.Message(ctx, got.ID); err != nil || !bytes.Equal(one.Raw, want.Raw) {
		t.Fatalf("Message(%d) = %+v, %v", got.ID, one, err)
	}
	uids, err := e.store.FolderUIDs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != 2 || !slices.Equal(uids[1].Flags, []string{`\Flagged`, "$X"}) {
		t.Fatalf("uids = %+v", uids)
	}
	sums, err := e.store.FolderSummaries(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].UID != 1 || sums[0].Size != 6 || sums[0].RawSize != int64(len(raw(1))) ||
		!sums[0].InternalDate.Equal(want.InternalDate) || !slices.Equal(sums[1].Flags, []string{`\Flagged`, "$X"}) {
		t.Fatalf("summaries = %+v", sums)
	}

	// UIDVALIDITY changed: the reset and the new rows land together.
	folder.UIDValidity, folder.UIDNext = 8, 2
	commit(store.Batch{Folder: folder, Reset: true, Messages: []store.Message{msg(1)}})
	if msgs, _ := e.store.FolderMessages(ctx, id); len(msgs) != 1 {
		t.Fatalf("after reset: %d messages, want 1", len(msgs))
	}

	// Many rows in one batch (on PostgreSQL several multi-row statements and a remainder), one UID twice: the
	// last copy wins, and nothing is stored twice.
	var many []store.Message
	for uid := uint32(1); uid <= 70; uid++ {
		many = append(many, msg(uid))
	}
	dup := msg(5)
	dup.Subject = "the later copy"
	many = append(many, dup)
	folder.UIDNext = 71
	commit(store.Batch{Folder: folder, Messages: many})
	if msgs, _ := e.store.FolderMessages(ctx, id); len(msgs) != 70 || msgs[4].Subject != "the later copy" || msgs[69].UID != 70 {
		t.Fatalf("after a 71-message batch with one UID twice: %d messages", len(msgs))
	}
	if dialect == "postgres" {
		// Raw bodies are stored uncompressed (migration 00003).
		var storage string
		if err := e.store.DB().QueryRowContext(ctx, `SELECT attstorage::text FROM pg_attribute
			WHERE attrelid = 'messages'::regclass AND attname = 'raw'`).Scan(&storage); err != nil || storage != "e" {
			t.Fatalf("messages.raw storage %q (%v), want e (external, uncompressed)", storage, err)
		}
	}

	if err := e.store.DeleteFolder(ctx, lease, task.Progress{}, acct.ID, "Données"); err != nil {
		t.Fatal(err)
	}
	if folders, _ := e.store.Folders(ctx, acct.ID); len(folders) != 0 {
		t.Fatalf("folder not deleted: %+v", folders)
	}
	if msgs, _ := e.store.FolderMessages(ctx, id); len(msgs) != 0 {
		t.Fatalf("messages of a deleted folder remain: %d", len(msgs))
	}
}

// testLargeMessagesInPieces stores messages larger than one statement binds (written in pieces)
// beside small ones, replaces one large by a larger and by a small one, and reads every byte
// back through both read paths; deleting the folder takes the pieces with it.
func testLargeMessagesInPieces(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	lease := e.claim(t, "w").Lease()
	raw := func(uid uint32, size int) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(uint32(i)*7 + uid) // every piece different, NUL and 0xff included
		}
		return b
	}
	folder := store.Folder{AccountID: acct.ID, Name: "INBOX", UIDValidity: 1, UIDNext: 4}
	want := map[uint32][]byte{1: raw(1, 10), 2: raw(2, 3<<20+17), 3: raw(3, 1<<20)}
	commit := func(msgs ...store.Message) int64 {
		t.Helper()
		id, err := e.store.CommitBatch(ctx, lease, task.Progress{}, store.Batch{Folder: folder, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	check := func(folderID int64) {
		t.Helper()
		msgs, err := e.store.FolderMessages(ctx, folderID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(want) {
			t.Fatalf("%d messages, want %d", len(msgs), len(want))
		}
		for _, m := range msgs {
			one, err := e.store.Message(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Raw, want[m.UID]) || !bytes.Equal(one.Raw, want[m.UID]) {
				t.Errorf("UID %d: %d and %d bytes read back, want %d, equal", m.UID, len(m.Raw), len(one.Raw), len(want[m.UID]))
			}
		}
		// A forced full sync compares these lengths with the server's sizes: a large message
		// must measure whole, or every --full downloads it again.
		sums, err := e.store.FolderSummaries(ctx, folderID)
		if err != nil {
			t.Fatal(err)
		}
		for _, sum := range sums {
			if sum.RawSize != int64(len(want[sum.UID])) {
				t.Errorf("UID %d: summary says %d raw bytes, want %d", sum.UID, sum.RawSize, len(want[sum.UID]))
			}
		}
	}
	id := commit(store.Message{UID: 1, Raw: want[1]}, store.Message{UID: 2, Raw: want[2]}, store.Message{UID: 3, Raw: want[3]})
	check(id)
	want[2], want[3] = raw(20, 5<<20), raw(30, 5)
	commit(store.Message{UID: 2, Raw: want[2]}, store.Message{UID: 3, Raw: want[3]})
	check(id)
	if err := e.store.DeleteFolder(ctx, lease, task.Progress{}, acct.ID, "INBOX"); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := e.store.DB().QueryRowContext(ctx, `SELECT count(*) FROM message_chunks`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d pieces left after the folder was deleted", left)
	}
}
