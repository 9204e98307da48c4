package store_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// TestSQLiteCheckpointsAfterWritesPause checks that a burst of writes lands in the WAL first and
// reaches the database file once the writes pause, without anyone asking.
func TestSQLiteCheckpointsAfterWritesPause(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, dsn, true)
	path := strings.TrimPrefix(dsn, "sqlite:")
	acct := storetest.SeedAccount(t, s)
	tasks, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tasks.Start(ctx, acct.ID, false); err != nil {
		t.Fatal(err)
	}
	tk, _, err := tasks.Claim(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	raw := bytes.Repeat([]byte("x"), 1<<20)
	msgs := make([]store.Message, 16)
	for i := range msgs {
		msgs[i] = store.Message{UID: uint32(i + 1), Raw: raw}
	}
	if _, err := s.CommitBatch(ctx, tk.Lease(), task.Progress{}, store.Batch{
		Folder:   store.Folder{AccountID: acct.ID, Name: "INBOX", UIDValidity: 1, UIDNext: 17},
		Messages: msgs,
	}); err != nil {
		t.Fatal(err)
	}
	if grown := size() - before; grown > 4<<20 {
		t.Errorf("the database file grew by %d bytes during the burst; the WAL should have taken it", grown)
	}
	deadline := time.Now().Add(5 * time.Second)
	for size()-before < 16<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("16 MiB written, but the database file grew by only %d bytes within 5 s: no checkpoint", size()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
