package store_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"mailsync/internal/store"
)

// TestSQLiteFilesAreOwnerOnly: the database, its WAL and its shared-memory file are 0600 even
// under a permissive umask, and an older install's wider modes are narrowed at open.
func TestSQLiteFilesAreOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o002)
	defer syscall.Umask(old)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "mailsync.db")
	open := func() *store.Store {
		s, err := store.Open(ctx, "sqlite:"+path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateUser(ctx, filepath.Base(t.TempDir())+"@example.test", "h", false); err != nil {
			t.Fatal(err)
		}
		return s
	}
	wantModes := func(when string) {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: %s has mode %o, want 600", when, filepath.Base(p), m)
			}
		}
	}
	s := open()
	wantModes("new database")
	s.Close()

	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	s = open()
	defer s.Close()
	wantModes("older install reopened")
}
