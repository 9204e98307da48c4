package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// ErrSchemaTooNew is returned when the database was migrated by a newer mailsync than this one:
// running on would risk writing rows the newer schema forbids.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// MigrationResult reports one applied migration.
type MigrationResult struct {
	Version int64
	Name    string
}

// Migrate brings the schema up to date. On PostgreSQL it holds an advisory lock while it works,
// so several instances starting at once migrate one after the other.
func (s *Store) Migrate(ctx context.Context) ([]MigrationResult, error) {
	return s.MigrateTo(ctx, -1)
}

// MigrateTo applies migrations up to version (all of them when version < 0). Tests use it to seed
// a database as an older binary left it.
func (s *Store) MigrateTo(ctx context.Context, version int64) ([]MigrationResult, error) {
	db, release := s.openMigrationDB()
	defer release()
	p, err := s.migrator(ctx, db)
	if err != nil {
		return nil, err
	}
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	if current > target {
		return nil, fmt.Errorf("store: %w: the database is at version %d, this mailsync knows up to %d; run a newer mailsync", ErrSchemaTooNew, current, target)
	}
	var results []*goose.MigrationResult
	if version < 0 {
		results, err = p.Up(ctx)
	} else {
		results, err = p.UpTo(ctx, version)
	}
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	out := make([]MigrationResult, 0, len(results))
	for _, r := range results {
		out = append(out, MigrationResult{Version: r.Source.Version, Name: r.Source.Path})
	}
	return out, nil
}

// SchemaVersion returns the version the database is at and the newest this binary knows.
func (s *Store) SchemaVersion(ctx context.Context) (current, known int64, err error) {
	p, err := s.migrator(ctx, s.write.raw)
	if err != nil {
		return 0, 0, err
	}
	current, known, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: schema version: %w", err)
	}
	return current, known, nil
}

// migrator returns a goose provider working through db.
func (s *Store) migrator(ctx context.Context, db *sql.DB) (*goose.Provider, error) {
	opts := []goose.ProviderOption{goose.WithSlog(slog.New(slog.DiscardHandler))}
	if s.dialect.name == "postgres" {
		// The lock is per schema: instances of one deployment share a schema and migrate one at a
		// time; deployments (or test runs) in other schemas of the same database do not wait.
		var schema string
		if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return nil, fmt.Errorf("store: migration lock: %w", err)
		}
		h := fnv.New64a()
		h.Write([]byte("mailsync migrations " + schema))
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(s.dialect.goose, db, s.dialect.migrations(), opts...)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return p, nil
}
