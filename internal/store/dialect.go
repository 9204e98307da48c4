package store

import (
	"embed"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

//go:embed migrations
var migrations embed.FS

// dialect is what differs between the engines; everything else is shared SQL.
type dialect struct {
	name  string
	goose goose.Dialect
	// now is an expression for the database clock in integer milliseconds.
	now string
	// skipLocked ends the claim's candidate query so that concurrent claimers pass over rows
	// another transaction holds (PostgreSQL); SQLite has one writer and needs nothing.
	skipLocked string
	// lockTimeout, when set, is the statement that makes the rest of a transaction wait at most
	// d for any lock (PostgreSQL's SET LOCAL lock_timeout). SQLite has no row locks: its writers
	// queue for the one write lock under busy_timeout.
	lockTimeout func(d time.Duration) string
	// insertRows is how many messages one INSERT carries. PostgreSQL pays a network round trip
	// per statement; SQLite has none, and copies a multi-row VALUES list once more before
	// inserting it (measured: 20,000 messages in 0.53 s one row per statement, 0.9-1.2 s with 32).
	insertRows int
	// changeRows is how many change rows one INSERT carries: on PostgreSQL many (they are small,
	// and each statement is a round trip), on SQLite one, as for messages (BenchmarkFirstSyncCommits:
	// 16 to 256 rows per statement were no faster, 256 twice as slow).
	changeRows int
	// isUniqueViolation recognises the engine's duplicate-key error.
	isUniqueViolation func(error) bool
	// isBusy recognises a lock wait that ran out: PostgreSQL's lock_timeout, SQLite's busy_timeout.
	isBusy func(error) bool
}

func (d dialect) migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations/"+d.name)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
