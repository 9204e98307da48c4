// Package store owns every SQL statement of mailsync. One *Store serves both engines: SQLite (the
// embedded default) and PostgreSQL (several instances sharing one database). The SQL is written
// once in the common subset of the two; the little that differs lives in a dialect (sqlite.go,
// postgres.go).
//
// Times are integer milliseconds since the Unix epoch in both engines. Every statement that judges
// time reads the database clock unless its caller passes an explicit time (tests do): liveness must
// not depend on the clocks of the machines running workers.
package store

import (
	"mailsync/internal/changes"
	"mailsync/internal/task"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	// ErrNotFound is returned when a row that was asked for by id does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write would break a uniqueness rule (an email already taken,
	// an account name already used).
	ErrConflict = errors.New("conflict")
)

// Store is the database of one mailsync deployment.
type Store struct {
	// write takes every write. On SQLite it is a single connection whose transactions begin
	// IMMEDIATE, so writers queue on busy_timeout instead of failing with SQLITE_BUSY.
	write pool
	// read serves reads; on SQLite a separate pool that WAL lets run beside the writer.
	read    pool
	dialect dialect
	// dsn is kept, without its password, for messages.
	dsn string
	// readStmts caches the prepared statements of the hottest reads (see prepared.go).
	readStmts sync.Map // query -> *sql.Stmt
	// checkpoints runs SQLite's WAL checkpoints off the writer's path; nil on PostgreSQL.
	checkpoints *checkpointer
	// changed is told of every commit that wrote changes (OnChanges); nil: nobody listens.
	changed func(accountID int64, committed []changes.Change)
	// pgConfig is how PostgreSQL sessions are opened (with their limits); nil on SQLite.
	pgConfig *pgx.ConnConfig
	// hooks is nil in production: only this package's tests set it (export_test.go).
	hooks *testHooks
}

// testHooks let this package's tests stop a writer between its statements and its commit, and
// number changes the naive way (a PostgreSQL sequence), to show what the real numbering
// prevents. Production code never sets them.
type testHooks struct {
	// beforeCommit is called by inTx after its statements, before COMMIT, with its context.
	beforeCommit func(ctx context.Context)
	// sequence numbers changes with nextval('naive_change_seq'), without the change head.
	sequence bool
	// noChanges writes no change at all: the benchmark's baseline.
	noChanges bool
}

// Open connects to the database named by dsn: "sqlite:PATH" or "postgres://..." (also
// "postgresql://..."). It does not migrate; call Migrate.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var (
		s   *Store
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s, err = openPostgres(dsn)
	default:
		return nil, fmt.Errorf("store: unknown database %q: use sqlite:PATH or postgres://USER@HOST/DB", redact(dsn))
	}
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases every connection.
func (s *Store) Close() error {
	var err error
	if s.checkpoints != nil {
		err = s.checkpoints.close()
	}
	err = errors.Join(err, s.write.raw.Close())
	if s.read.raw != s.write.raw {
		err = errors.Join(err, s.read.raw.Close())
	}
	return err
}

// Ping checks that the database answers, within a short deadline of its own.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.write.raw.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s does not answer: %w", s.dsn, err)
	}
	return nil
}

// Dialect names the engine: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect.name }

// Now reads the database clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var ms int64
	if err := s.read.QueryRowContext(ctx, `SELECT {{now}}`).Scan(&ms); err != nil {
		return time.Time{}, fmt.Errorf("store: read clock: %w", err)
	}
	return fromMillis(ms), nil
}

// inTx runs fn in a write transaction and commits it when fn returns nil.
//
// fn must do nothing but SQL: every lock its statements take is held until it returns, so a
// transaction that waited on IMAP, HTTP or a channel would stall every other session that needs
// those rows. On PostgreSQL the server enforces it: a session idle inside a transaction past
// idle_in_transaction_session_timeout is ended and the transaction rolled back (postgres.go).
func (s *Store) inTx(ctx context.Context, fn func(tx txn) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // fn's error is the one to report; a failed rollback ends with the connection
		return err
	}
	if s.hooks != nil && s.hooks.beforeCommit != nil {
		s.hooks.beforeCommit(ctx)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if s.checkpoints != nil {
		s.checkpoints.wrote()
	}
	return nil
}

// busy wraps a lock wait that ran out as task.ErrBusy, keeping the engine's error for the message.
func (s *Store) busy(err error) error {
	if err != nil && s.dialect.isBusy != nil && s.dialect.isBusy(err) {
		return fmt.Errorf("%w (%w)", task.ErrBusy, err)
	}
	return err
}

// at returns the explicit time of a statement as milliseconds, or NULL for "use the database
// clock": every time-dependent statement is written COALESCE($n, {{now}}).
func at(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func millis(d time.Duration) int64 { return d.Milliseconds() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func fromNullMillis(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMillis(n.Int64)
}

// redact hides the password of a URL-shaped DSN.
func redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return dsn
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return dsn
}

// DB returns the write handle. It exists for tests that must write rows the Store's methods would
// never write (the database's own constraints are what they test) and for nothing else.
func (s *Store) DB() *sql.DB { return s.write.raw }
