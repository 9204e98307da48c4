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
