package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var sqliteDialect = dialect{
	name:       "sqlite",
	goose:      goose.DialectSQLite3,
	now:        "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
	insertRows: 1,
	changeRows: 1,
	isUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	isBusy: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
	},
}

// openSQLite opens the file at path, creating it and its directory when missing. Pragmas go in
// the DSN so that every pooled connection gets them.
func openSQLite(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: sqlite: empty path (use sqlite:PATH)")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: sqlite: %w", err)
		}
	}
	if err := ownerOnly(path); err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	if err := createSQLite(path); err != nil {
		return nil, fmt.Errorf("store: sqlite: create %s: %w", path, err)
	}
	// wal_autocheckpoint bounds the WAL (1 GiB with 64 KiB pages) while the checkpointer waits
	// for writes to pause; journal_size_limit shrinks the file back when a busy WAL restarts (the
	// checkpointer truncates it to nothing once writes pause; see checkpointer).
	pragmas := "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)" +
		"&_pragma=wal_autocheckpoint(16384)&_pragma=journal_size_limit(67108864)"
	base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&" + pragmas
	write, err := sql.Open("sqlite", base+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	// One writer: SQLite allows one at a time anyway, and a deferred transaction that reads then
	// writes would fail with SQLITE_BUSY instead of waiting.
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	read.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	// The checkpointer waits for others only briefly: a truncating checkpoint holds writers off
	// while it waits, and one that cannot finish is simply tried again later.
	cp, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+
		fmt.Sprintf("?_pragma=busy_timeout(%d)&", checkpointWait.Milliseconds())+pragmas)
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	cp.SetMaxOpenConns(1)
	return &Store{write: pool{write, &sqliteDialect}, read: pool{read, &sqliteDialect}, dialect: sqliteDialect, dsn: "sqlite:" + path,
		checkpoints: startCheckpointer(cp, path)}, nil
}

// checkpointer copies the WAL into the database file on its own connection once writes pause,
// or at once when the WAL has grown past checkpointBacklog, and gives the WAL's disk space back
// when a sync ends and when the database is idle.
//
// A checkpoint costs a copy of every page written plus two fsyncs: left to the writer
// (wal_autocheckpoint), one lands inside the commit that crosses the threshold, and during a full
// sync they took two thirds of the writer's time (measured: 20,000 messages written in 0.45 s
// without checkpoints, 1.4-2.2 s with them). Deferred to a quiet moment, the same work happens
// after the sync, off every caller's path. Under writes that never pause (a first sync of a
// mailbox larger than the backlog), checkpoints run beside the writer instead of inside it; the
// writer's own auto-checkpoint, set higher in the DSN, is only the last bound on the WAL.
//
// Those PASSIVE checkpoints never block anyone, but they leave the WAL file at the largest size it
// reached: the pages are reused, the disk space is not returned. A first sync writes about twice
// its database's size into the WAL, so a disk with room for the data but not for that WAL filled
// up on the next sync (measured: 20 MB of mail, a 28 MB database and a 37 MB WAL). So when a sync
// ends, and when writes have paused for checkpointIdle, a TRUNCATE checkpoint empties the WAL
// file. It briefly holds writers off (they wait on their busy_timeout) and waits for readers at
// most checkpointWait; if it cannot finish, the next quiet moment tries again.
type checkpointer struct {
	db     *sql.DB
	wal    string // the WAL file's path
	kick   chan struct{}
	settle chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
}

const (
	// checkpointQuiet is how long writes must pause before a checkpoint runs.
	checkpointQuiet = 250 * time.Millisecond
	// checkpointIdle is how long writes must pause before the WAL file is truncated.
	checkpointIdle = 2 * time.Second
	// checkpointWait bounds how long a truncating checkpoint waits for the writer and readers.
	checkpointWait = time.Second
	// checkpointBacklog is the WAL size past which it is emptied (or at least copied) without
	// waiting for writes to pause: the bound on the WAL, and so on the disk a sync needs.
	checkpointBacklog = 256 << 20
)

func startCheckpointer(db *sql.DB, path string) *checkpointer {
	ctx, stop := context.WithCancel(context.Background())
	c := &checkpointer{db: db, wal: path + "-wal", kick: make(chan struct{}, 1), settle: make(chan struct{}, 1),
		stop: stop, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	quiet := time.NewTimer(checkpointQuiet)
	quiet.Stop()
	idle := time.NewTimer(checkpointIdle)
	idle.Stop()
	defer quiet.Stop()
	defer idle.Stop()
	pending := false  // written since the last checkpoint
	truncate := false // the WAL file is to be emptied at the next quiet moment
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
			idle.Stop()
			if fi, err := os.Stat(c.wal); err == nil && fi.Size() >= checkpointBacklog {
				if !c.truncate(ctx) {
					c.checkpoint(ctx) // the writer held on: copy beside it, truncate later
				}
				continue
			}
			quiet.Reset(checkpointQuiet)
			pending = true
		case <-c.settle:
			idle.Stop()
			truncate = !c.truncate(ctx)
			pending = truncate
			if truncate {
				quiet.Reset(checkpointQuiet)
			}
		case <-quiet.C:
			switch {
			case truncate:
				if truncate = !c.truncate(ctx); truncate {
					idle.Reset(checkpointIdle) // a reader held on: try again when idle
				}
			case pending:
				c.checkpoint(ctx)
				idle.Reset(checkpointIdle)
			}
			pending = false
		case <-idle.C:
			if c.truncate(ctx) {
				truncate = false
			} else {
				idle.Reset(checkpointIdle)
			}
		}
	}
}

// checkpoint runs a PASSIVE checkpoint, which never blocks the writer or readers; what it cannot
// copy yet (frames a reader still needs) the next round takes. An error (SQLITE_BUSY) means the
// same: later.
func (c *checkpointer) checkpoint(ctx context.Context) {
	_, _ = c.db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
}

// truncate runs a TRUNCATE checkpoint: everything copied, the WAL file emptied. It reports whether
// it got that far; a writer or reader that held on past checkpointWait means not yet.
func (c *checkpointer) truncate(ctx context.Context) bool {
	var busy, frames, copied int64
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &copied)
	return err == nil && busy == 0
}

// wrote tells the checkpointer that the WAL grew.
func (c *checkpointer) wrote() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// settled tells the checkpointer that a sync ended: a good moment to give the WAL's space back.
func (c *checkpointer) settled() {
	select {
	case c.settle <- struct{}{}:
	default:
	}
}

func (c *checkpointer) close() error {
	c.stop()
	<-c.done
	return c.db.Close()
}

// ownerOnly makes the database file, and its WAL and shared-memory files if they exist, readable
// by their owner only: they hold every message, the users' password hashes and the sealed IMAP
// passwords. A missing database file is created empty with mode 0600 (SQLite takes an empty file
// for a new database), and SQLite gives the WAL and SHM files it creates the mode of the database
// file, whatever the umask. Files of an older install with wider modes are narrowed.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	return nil
}

// pageSize is the page size of new databases. Messages average ~13 KB: with the default 4 KiB
// pages each one spans an overflow chain of several pages, and every page is a separate write to
// the WAL and again to the database at checkpoint. 64 KiB pages cut the system calls of a
// full sync by an order of magnitude (measured: see bench/README.md).
const pageSize = 65536

// createSQLite gives a database that does not exist yet its page size. It must happen before
// the switch to WAL, which fixes the page size for good, and the driver applies DSN pragmas in
// alphabetical order (journal_mode before page_size), so it is done here, once.
func createSQLite(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return nil
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, pragma := range []string{fmt.Sprintf("PRAGMA page_size = %d", pageSize), "PRAGMA journal_mode = WAL"} {
		if _, err := db.Exec(pragma); err != nil {
			return err
		}
	}
	return nil
}
