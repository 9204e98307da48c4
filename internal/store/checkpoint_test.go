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

// TestSQLiteEmptiesTheWAL checks that the WAL gives its disk space back when a sync ends (at once,
// well before the idle truncation could) and when writes have paused for a while without one.
func TestSQLiteEmptiesTheWAL(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, dsn, true)
	wal := strings.TrimPrefix(dsn, "sqlite:") + "-wal"
	acct := storetest.SeedAccount(t, s)
	tasks, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	walSize := func() int64 {
		fi, err := os.Stat(wal)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// burst runs a task that writes 8 MiB of messages and returns its lease.
	burst := func(first uint32) task.Lease {
		t.Helper()
		if _, _, err := tasks.Start(ctx, acct.ID, false); err != nil {
			t.Fatal(err)
		}
		tk, _, err := tasks.Claim(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		raw := bytes.Repeat([]byte("x"), 1<<20)
		msgs := make([]store.Message, 8)
		for i := range msgs {
			msgs[i] = store.Message{UID: first + uint32(i), Raw: raw}
		}
		if _, err := s.CommitBatch(ctx, tk.Lease(), task.Progress{}, store.Batch{
			Folder:   store.Folder{AccountID: acct.ID, Name: "INBOX", UIDValidity: 1, UIDNext: first + 8},
			Messages: msgs,
		}); err != nil {
			t.Fatal(err)
		}
		if w := walSize(); w < 8<<20 {
			t.Fatalf("the WAL holds %d bytes after an 8 MiB burst", w)
		}
		return tk.Lease()
	}
	emptiedWithin := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); walSize() > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return false
			}
		}
		return true
	}

	l := burst(1)
	if _, err := tasks.Finish(ctx, l, task.Succeeded, task.Progress{}, ""); err != nil {
		t.Fatal(err)
	}
	if !emptiedWithin(time.Second) {
		t.Fatalf("the WAL still holds %d bytes a second after the sync ended", walSize())
	}

	l = burst(9) // a sync that is still running, but has stopped writing
	if !emptiedWithin(5 * time.Second) {
		t.Fatalf("the WAL still holds %d bytes after 5 s without writes", walSize())
	}
	if _, err := tasks.Finish(ctx, l, task.Succeeded, task.Progress{}, ""); err != nil {
		t.Fatal(err)
	}
}
