package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
)

var postgresDialect = dialect{
	name:  "postgres",
	goose: goose.DialectPostgres,
	// statement_timestamp, not now(): now() is frozen at the start of the transaction, and a
	// heartbeat must record when it happened.
	now:        "(extract(epoch FROM statement_timestamp()) * 1000)::bigint",
	skipLocked: "FOR UPDATE SKIP LOCKED",
	insertRows: 32,
	// A reaper waits at most this long for a row another session holds, then tries again at its
	// next interval: one stuck session must not stop reaping for everyone.
	reapPrelude: "SET LOCAL lock_timeout = '5s'",
	isUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
}

func openPostgres(dsn string) (*Store, error) {
	shown := redact(dsn)
	// A client that stops inside a transaction (a paused or partitioned worker) must not hold its
	// row locks for ever: the server ends such a session after a minute, unless the DSN says
	// otherwise. Our own transactions last milliseconds.
	if !strings.Contains(dsn, "idle_in_transaction_session_timeout") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + "idle_in_transaction_session_timeout=60000"
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	return &Store{write: db, read: db, dialect: postgresDialect, dsn: shown}, nil
}
