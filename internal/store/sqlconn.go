package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Every statement of the Store passes through pool or txn, and both expand the dialect's macros
// (dialect.expand) before the driver sees the text. There is no other path to the database from
// this package's code (sqlconn_test.go checks that), so a macro cannot be forgotten at one call
// site and reach the engine as a syntax error, or worse, as a literal.

// pool is a database handle whose statements are always expanded.
type pool struct {
	raw *sql.DB
	d   *dialect
}

func (p pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.raw.ExecContext(ctx, p.d.expand(query), args...)
}

func (p pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return p.raw.QueryContext(ctx, p.d.expand(query), args...)
}

func (p pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.raw.QueryRowContext(ctx, p.d.expand(query), args...)
}

func (p pool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return p.raw.PrepareContext(ctx, p.d.expand(query))
}

func (p pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (txn, error) {
	tx, err := p.raw.BeginTx(ctx, opts)
	return txn{raw: tx, d: p.d, committed: new([]func())}, err
}

// txn is a transaction whose statements are always expanded.
type txn struct {
	raw *sql.Tx
	d   *dialect
	// committed are what to run once the transaction has committed (see onCommit).
	committed *[]func()
}

// onCommit runs fn after the transaction commits, and never if it does not.
func (t txn) onCommit(fn func()) { *t.committed = append(*t.committed, fn) }

func (t txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.raw.ExecContext(ctx, t.d.expand(query), args...)
}

func (t txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.raw.QueryContext(ctx, t.d.expand(query), args...)
}

func (t txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.raw.QueryRowContext(ctx, t.d.expand(query), args...)
}

func (t txn) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.raw.PrepareContext(ctx, t.d.expand(query))
}

// Commit commits, then runs what onCommit registered.
func (t txn) Commit() error {
	if err := t.raw.Commit(); err != nil {
		return err
	}
	for _, fn := range *t.committed {
		fn()
	}
	return nil
}

func (t txn) Rollback() error { return t.raw.Rollback() }

// macro returns the dialect's text for the name a statement writes as {{name}}.
func (d *dialect) macro(name string) (text string, known bool) {
	switch name {
	case "now": // the database clock in integer milliseconds
		return d.now, true
	}
	return "", false
}

// expand replaces every {{name}} in q by the dialect's text for it. An unknown name, or a "{{"
// left without its "}}", is a bug in this package's SQL and panics: the statement is a constant,
// so the first test that runs it finds the mistake, and TestEveryMacroIsKnown finds it without
// running it.
func (d *dialect) expand(q string) string {
	if !strings.Contains(q, "{{") {
		return q
	}
	var b strings.Builder
	rest := q
	for {
		before, after, found := strings.Cut(rest, "{{")
		b.WriteString(before)
		if !found {
			return b.String()
		}
		name, tail, closed := strings.Cut(after, "}}")
		text, known := d.macro(name)
		if !closed || !known {
			panic(fmt.Sprintf("store: unknown SQL macro {{%s}} in %q", strings.TrimSpace(name), q))
		}
		b.WriteString(text)
		rest = tail
	}
}
