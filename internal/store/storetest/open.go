// Package storetest is the one conformance suite of package store and the lifecycle built on it,
// run against every engine, plus the helpers other packages' tests use to get a real database.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to create and drop test schemas

	"mailsync/internal/store"
	"mailsync/internal/testenv"
)

// DefaultPostgresURL is where the tests find PostgreSQL unless MAILSYNC_TEST_POSTGRES says
// otherwise. The test script makes sure a server answers there.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Dialects are the engines every suite runs on.
var Dialects = []string{"sqlite", "postgres"}

// ForEach runs fn as a parallel subtest on every engine. The postgres subtest is skipped (see
// RequirePostgres) when PostgreSQL does not answer.
func ForEach(t *testing.T, fn func(t *testing.T, dialect string)) {
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			if d == "postgres" {
				RequirePostgres(t)
			}
			fn(t, d)
		})
	}
}

// CountTasks returns how many task rows an account has, of any state.
func CountTasks(tb testing.TB, s *store.Store, accountID int64) int {
	tb.Helper()
	var n int
	if err := s.DB().QueryRow(`SELECT count(*) FROM sync_tasks WHERE account_id = $1`, accountID).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// PostgresURL returns the base URL of the test PostgreSQL.
func PostgresURL() string {
	if u := os.Getenv("MAILSYNC_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// pingTimeout bounds how long RequirePostgres waits for PostgreSQL to answer.
const pingTimeout = 3 * time.Second

// postgresProbe remembers, for the whole test binary, whether PostgreSQL answered: one probe,
// not one wait per test.
var postgresProbe struct {
	once sync.Once
	err  error
}

// RequirePostgres returns PostgresURL, or skips tb with one line (a failure under
// MAILSYNC_TEST_STRICT, see package testenv) when PostgreSQL does not answer within a few
// seconds.
func RequirePostgres(tb testing.TB) string {
	tb.Helper()
	base := PostgresURL()
	postgresProbe.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		db, err := sql.Open("pgx", base)
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		postgresProbe.err = err
	})
	if err := postgresProbe.err; err != nil {
		u, perr := url.Parse(base)
		where := base
		if perr == nil {
			where = u.Host // the URL without its credentials
		}
		testenv.Skipf(tb, "postgres", "no answer at %s (set MAILSYNC_TEST_POSTGRES, or run scripts/provision.sh or make test-all): %v", where, err)
	}
	return base
}

// DSN returns a fresh, empty database of the dialect for tb and its DSN: a new SQLite file in a
// temporary directory, or a new PostgreSQL schema dropped when the test ends. A PostgreSQL that
// does not answer skips the test (see RequirePostgres).
func DSN(tb testing.TB, dialect string) string {
	tb.Helper()
	switch dialect {
	case "sqlite":
		return "sqlite:" + filepath.Join(tb.TempDir(), "mailsync.db")
	case "postgres":
		base := RequirePostgres(tb)
		admin, err := sql.Open("pgx", base)
		if err != nil {
			tb.Fatalf("storetest: open %s: %v", base, err)
		}
		defer admin.Close()
		schema := "t_" + rand.Text()[:16]
		schema = sanitize(schema)
		if _, err := admin.ExecContext(context.Background(), `CREATE SCHEMA `+schema); err != nil {
			tb.Fatalf("storetest: PostgreSQL at %s does not answer (run the test script, which starts it): %v", base, err)
		}
		tb.Cleanup(func() {
			db, err := sql.Open("pgx", base)
			if err != nil {
				return
			}
			defer db.Close()
			_, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		})
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatalf("storetest: %s: %v", base, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	default:
		tb.Fatalf("storetest: unknown dialect %q", dialect)
		return ""
	}
}

// sanitize keeps a schema name to lower-case letters, digits and underscores.
func sanitize(s string) string {
	out := make([]byte, 0, len(s))
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		}
	}
	return string(out)
}

// Open returns a migrated Store on a fresh database of the dialect, closed when the test ends.
func Open(tb testing.TB, dialect string) *store.Store {
	tb.Helper()
	return OpenDSN(tb, DSN(tb, dialect), true)
}

// OpenDSN opens dsn, migrating it when migrate is set, and closes it when the test ends.
func OpenDSN(tb testing.TB, dsn string, migrate bool) *store.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if migrate {
		if _, err := s.Migrate(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// SeedAccount creates a user and an account for them, and returns the account.
func SeedAccount(tb testing.TB, s *store.Store) store.Account {
	tb.Helper()
	ctx := context.Background()
	u, err := s.CreateUser(ctx, rand.Text()+"@example.test", "x", false)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := s.CreateAccount(ctx, store.Account{
		UserID: u.ID, Name: "acct", IMAPHost: "127.0.0.1", IMAPPort: 143, TLSMode: "none",
		Login: "bob", SecretEnc: []byte("sealed"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
