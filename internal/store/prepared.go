package store

import (
	"context"
	"database/sql"
	"fmt"
)

// queryRowPrepared runs a read through a statement prepared once per Store. The hottest reads
// (a task polled by every open page, the token behind every API request) are small, and modernc
// SQLite spends most of such a query parsing its SQL: preparing once more than doubles what the
// API serves per second. PostgreSQL's driver caches statements anyway; this changes nothing there.
//
// The statement belongs to the read pool: database/sql re-prepares it on each connection as needed.
func (s *Store) queryRowPrepared(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	stmt, ok := s.readStmts.Load(query)
	if !ok {
		prepared, err := s.read.PrepareContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		var loaded bool
		if stmt, loaded = s.readStmts.LoadOrStore(query, prepared); loaded {
			prepared.Close() // another goroutine prepared it first
		}
	}
	return stmt.(*sql.Stmt).QueryRowContext(ctx, args...), nil
}
