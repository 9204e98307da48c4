package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
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
	changeRows: 256,
	lockTimeout: func(d time.Duration) string {
		return "SET LOCAL lock_timeout = " + strconv.FormatInt(max(d.Milliseconds(), 1), 10)
	},
	isUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
	// lock_not_available: a lock_timeout ran out.
	isBusy: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "55P03"
	},
}

// sessionLimits bound what any one mailsync session can hold on PostgreSQL, whatever happens to
// the process that opened it (a VM pause, a SIGSTOP, a half-open link). A DSN that names one of
// them keeps its own value. The README's PostgreSQL section gives the reasons for each value.
var sessionLimits = []struct{ name, value string }{
	// Between the statements of a transaction mailsync only computes: no transaction waits on
	// IMAP, HTTP or anything else but the database. A session idle inside a transaction for 10 s
	// is therefore a client that stopped, and its row locks would stall whoever needs those rows
	// (the heartbeats of a healthy worker among them): the server ends it, well before the
	// default self-fence (45 s) of the worker whose task row it holds.
	{"idle_in_transaction_session_timeout", "10000"},
	// No statement of mailsync's runs for more than a few seconds (a batch statement takes
	// milliseconds, a search over 100,000 messages a few seconds). 60 s ends runaway statements and
	// the orphaned ones of clients that gave up, and is longer than the default self-fence, so a
	// sync's batch that waits behind another session's lock is stopped by its worker's self-fence
	// (and its task retried), not failed by the database.
	{"statement_timeout", "60000"},
}

func openPostgres(dsn string) (*Store, error) {
	shown := redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres %s: %w", shown, err)
	}
	for _, l := range sessionLimits {
		if _, set := cfg.RuntimeParams[l.name]; !set {
			cfg.RuntimeParams[l.name] = l.value
		}
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	return &Store{write: pool{db, &postgresDialect}, read: pool{db, &postgresDialect}, dialect: postgresDialect, dsn: shown, pgConfig: cfg}, nil
}

// openMigrationDB returns a pool for migrations: the same sessions without a statement timeout,
// because a migration that rewrites a large table may rightly run for minutes.
func (s *Store) openMigrationDB() (db *sql.DB, release func()) {
	if s.pgConfig == nil {
		return s.write.raw, func() {}
	}
	cfg := s.pgConfig.Copy()
	cfg.RuntimeParams["statement_timeout"] = "0"
	db = stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(2)
	return db, func() { db.Close() }
}
