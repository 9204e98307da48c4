package store

import (
	"database/sql"
	"errors"
	"fmt"

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
	isUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
}

func openPostgres(dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	return &Store{write: db, read: db, dialect: postgresDialect, dsn: redact(dsn)}, nil
}
