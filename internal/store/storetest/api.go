package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// The parts of the store the HTTP API adds: tokens, account edits, message listing, counts.

func testTokens(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	u, err := e.store.CreateUser(ctx, "tok@example.test", "hash", true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.store.CreateToken(ctx, u.ID, "h1", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateToken(ctx, u.ID, "h1", "again"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate token hash: got %v, want ErrConflict", err)
	}
	got, err := e.store.UserByToken(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID || !got.IsAdmin || got.Email != u.Email {
		t.Fatalf("UserByToken = %+v, want %+v", got, u)
	}
	if _, err := e.store.UserByToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown token: got %v, want ErrNotFound", err)
	}
	toks, err := e.store.Tokens(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].ID != tok.ID || toks[0].Name != "laptop" || toks[0].LastUsedAt.IsZero() {
		t.Fatalf("Tokens = %+v, want the one token, used", toks)
	}
	if err := e.store.DeleteToken(ctx, u.ID+1, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting another user's token: got %v, want ErrNotFound", err)
	}
	if err := e.store.DeleteToken(ctx, u.ID, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UserByToken(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted token: got %v, want ErrNotFound", err)
	}
}

func testAccountUpdateDelete(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	a := SeedAccount(t, e.store)
	b, err := e.store.CreateAccount(ctx, store.Account{UserID: a.UserID, Name: "other", IMAPHost: "h", IMAPPort: 993,
		TLSMode: "tls", Login: "x", SecretEnc: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	a.Name, a.IMAPPort, a.SyncInterval, a.SecretEnc = "renamed", 1143, 5*time.Minute, []byte("new")
	up, err := e.store.UpdateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "renamed" || up.IMAPPort != 1143 || up.SyncInterval != 5*time.Minute || string(up.SecretEnc) != "new" || up.UserID != a.UserID {
		t.Fatalf("UpdateAccount = %+v", up)
	}
	b.Name = "renamed"
	if _, err := e.store.UpdateAccount(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("renaming onto a taken name: got %v, want ErrConflict", err)
	}

	// Deleting takes folders, messages and tasks with it.
	seedMessages(t, e, a.ID, 3)
	if err := e.store.DeleteAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Account(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted account: got %v", err)
	}
	for _, table := range []string{"folders", "messages", "sync_tasks"} {
		var n int
		if err := e.store.DB().QueryRow(`SELECT count(*) FROM `+table+` WHERE account_id = $1`, a.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows left in %s after the account was deleted", n, table)
		}
	}
	if err := e.store.DeleteAccount(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: got %v, want ErrNotFound", err)
	}
	if _, err := e.store.UpdateAccount(ctx, a); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("updating a deleted account: got %v, want ErrNotFound", err)
	}
}

// seedMessages commits n messages into folder INBOX of the account through a real task, the
// way a sync writes them, and returns the folder id. Message i has subject "Subject i", sender
// "sender-i@example.test", text "body i" and a date i hours after a fixed instant; every third
// message has no date.
func seedMessages(t *testing.T, e env, accountID int64, n int) int64 {
	t.Helper()
	return SeedMessages(t, e.store, e.tasks, accountID, "INBOX", n)
}

// SeedMessages stores n messages in the named folder of the account through a real task (started,
// claimed and finished with the lifecycle m), and returns the folder's id. Message i (from 1) has
// subject "Subject i", sender "sender-i@example.test", text "body i", raw bytes RawMessage(i),
// and a Date i hours after 2025-01-01, except every third message, which has none.
func SeedMessages(tb testing.TB, s *store.Store, m *task.Manager, accountID int64, folder string, n int) int64 {
	tb.Helper()
	ctx := context.Background()
	if _, _, err := m.Start(ctx, accountID, false); err != nil {
		tb.Fatal(err)
	}
	tk, ok, err := m.Claim(ctx, "seeder")
	if err != nil || !ok {
		tb.Fatalf("claim: ok=%v err=%v", ok, err)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs []store.Message
	for i := 1; i <= n; i++ {
		msg := store.Message{UID: uint32(i), MessageID: fmt.Sprintf("<m%d@example.test>", i),
			Subject: fmt.Sprintf("Subject %d", i), From: fmt.Sprintf("sender-%d@example.test", i),
			To: []string{"bob@example.test"}, Flags: []string{`\Seen`}, Snippet: fmt.Sprintf("body %d", i),
			BodyText: fmt.Sprintf("body %d", i), Raw: RawMessage(i), InternalDate: base}
		msg.Size = int64(len(msg.Raw))
		if i%3 != 0 {
			msg.Date = base.Add(time.Duration(i) * time.Hour)
		}
		msgs = append(msgs, msg)
	}
	folderID, err := s.CommitBatch(ctx, tk.Lease(), task.Progress{MessagesTotal: n, MessagesDone: n},
		store.Batch{Folder: store.Folder{AccountID: accountID, Name: folder, Delimiter: "/", UIDValidity: 1, UIDNext: uint32(n + 1), Messages: n},
			Messages: msgs})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := m.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{MessagesTotal: n, MessagesDone: n}, ""); err != nil {
		tb.Fatal(err)
	}
	return folderID
}

// RawMessage is the raw bytes SeedMessages stores for message i: CRLF line ends and a byte that
// is not UTF-8, so that a copy that is not byte-exact shows.
func RawMessage(i int) []byte {
	return fmt.Appendf(nil, "From: sender-%d@example.test\r\nSubject: Subject %d\r\n\r\nbody %d \xff\r\n", i, i, i)
}

func testMessageListing(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	a := SeedAccount(t, e.store)
	const n = 25
	folderID := seedMessages(t, e, a.ID, n)

	// Every page in order, no message twice, none missing, newest first, undated last.
	var (
		seen   []int64
		cursor store.MessageCursor
		pages  int
	)
	for {
		page, next, err := e.store.Messages(ctx, store.MessageQuery{AccountID: a.ID, After: cursor, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range page {
			if m.Raw != nil || m.BodyText != "" {
				t.Fatalf("a listing carries raw bytes or text of message %d", m.ID)
			}
			seen = append(seen, m.ID)
		}
		if next.IsZero() {
			break
		}
		if pages > n {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if len(seen) != n || pages != 4 {
		t.Fatalf("saw %d messages in %d pages, want %d in 4", len(seen), pages, n)
	}
	sorted := slices.Clone(seen)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != n {
		t.Fatalf("a message appeared twice: %v", seen)
	}
	first, _, _ := e.store.Messages(ctx, store.MessageQuery{AccountID: a.ID, Limit: 1})
	if len(first) != 1 || first[0].Subject != "Subject 25" {
		t.Fatalf("newest first: got %+v, want Subject 25", first)
	}

	for _, tc := range []struct {
		search string
		folder int64
		want   int
	}{
		{search: "subject 1", want: 11}, // 1, 10..19
		{search: "SENDER-2@", want: 1},
		{search: "body 2", want: 7}, // 2, 20..25
		{search: "%", want: 0},
		{search: "_", want: 0},
		{search: "", folder: folderID, want: n},
		{search: "", folder: folderID + 1000, want: 0},
	} {
		page, _, err := e.store.Messages(ctx, store.MessageQuery{AccountID: a.ID, FolderID: tc.folder, Search: tc.search, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != tc.want {
			t.Errorf("search %q folder %d: %d messages, want %d", tc.search, tc.folder, len(page), tc.want)
		}
	}
	other := SeedAccount(t, e.store)
	if page, _, _ := e.store.Messages(ctx, store.MessageQuery{AccountID: other.ID}); len(page) != 0 {
		t.Fatalf("another account sees %d messages", len(page))
	}
}

func testTaskCounts(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	a, b := SeedAccount(t, e.store), SeedAccount(t, e.store)
	seedMessages(t, e, a.ID, 1) // one succeeded task
	e.start(t, a.ID)
	e.start(t, b.ID)
	e.claim(t, "w")
	counts, err := e.store.TaskCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[task.State]int{task.Succeeded: 1, task.Queued: 1, task.Running: 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("TaskCounts = %v, want %v", counts, want)
	}
}

func testTaskWithOwner(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	ctx := context.Background()
	a := SeedAccount(t, e.store)
	tk := e.start(t, a.ID)
	for range 2 { // the second read goes through the cached prepared statement
		got, owner, err := e.store.TaskWithOwner(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != tk.ID || owner != a.UserID || got.ObservedAt.IsZero() {
			t.Fatalf("TaskWithOwner = %+v owner %d, want task %s of user %d", got, owner, tk.ID, a.UserID)
		}
	}
	if _, _, err := e.store.TaskWithOwner(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing task: got %v, want ErrNotFound", err)
	}
}
