package store

import (
	"context"
	"fmt"
)

// PauseBeforeCommit makes every write transaction of s call fn, with its context, after its
// statements and before its COMMIT: a test holds a writer there to choose the commit order.
func PauseBeforeCommit(s *Store, fn func(ctx context.Context)) {
	if s.hooks == nil {
		s.hooks = &testHooks{}
	}
	s.hooks.beforeCommit = fn
}

// NumberChangesWithSequence makes s number changes the naive way, from a PostgreSQL sequence
// (appendNaively), to show that a cursor over such numbers loses changes.
func NumberChangesWithSequence(ctx context.Context, s *Store) error {
	if _, err := s.write.ExecContext(ctx, `CREATE SEQUENCE IF NOT EXISTS naive_change_seq`); err != nil {
		return fmt.Errorf("create the naive sequence: %w", err)
	}
	if s.hooks == nil {
		s.hooks = &testHooks{}
	}
	s.hooks.sequence = true
	return nil
}

// SetChangeRows sets how many change rows one INSERT of s carries (the benchmark's knob).
func SetChangeRows(s *Store, n int) { s.dialect.changeRows = n }

// WriteNoChanges makes s write no change at all: the baseline the change log's cost is measured
// against.
func WriteNoChanges(s *Store) {
	if s.hooks == nil {
		s.hooks = &testHooks{}
	}
	s.hooks.noChanges = true
}
