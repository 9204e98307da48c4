package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/task"
)

// changeColumns is what one change row binds, in insertChangesSQL's order.
const changeColumns = 8

// appendChanges numbers cs as the account's next changes and writes them in tx, which must be
// the transaction that writes the data they describe. The change head's row stays locked until tx
// ends, so a concurrent writer of the same account takes the numbers after these, and only once
// these are committed: a reader that has seen number n has seen every number below it. It returns
// cs with their numbers, and tells the store's change hook once tx commits (OnChanges).
func (s *Store) appendChanges(ctx context.Context, tx txn, accountID int64, taskID string, cs []changes.Change) ([]changes.Change, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	if s.hooks != nil && s.hooks.noChanges {
		return nil, nil
	}
	if s.hooks != nil && s.hooks.sequence {
		return s.appendNaively(ctx, tx, accountID, taskID, cs)
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `
		INSERT INTO change_heads (account_id, last_seq) VALUES ($1, $2)
		ON CONFLICT (account_id) DO UPDATE SET last_seq = change_heads.last_seq + excluded.last_seq
		RETURNING last_seq`, accountID, len(cs)).Scan(&last); err != nil {
		return nil, fmt.Errorf("number changes: %w", err)
	}
	first := last - int64(len(cs)) + 1
	out := make([]changes.Change, len(cs))
	for i, c := range cs {
		c.AccountID, c.Seq, c.TaskID = accountID, first+int64(i), taskID
		out[i] = c
	}
	if s.changed != nil {
		tx.onCommit(func() { s.changed(accountID, out) })
	}
	return out, s.insertChanges(ctx, tx, out)
}

// appendNaively is the numbering this package does not use, kept for the test that shows why
// (cursor_test.go): numbers from a PostgreSQL sequence are handed out at nextval, not at commit,
// so a transaction holding a low number can commit after one holding a higher number, and a
// reader that has already passed the higher one never sees the lower.
func (s *Store) appendNaively(ctx context.Context, tx txn, accountID int64, taskID string, cs []changes.Change) ([]changes.Change, error) {
	rows, err := tx.QueryContext(ctx, `SELECT nextval('naive_change_seq') FROM generate_series(1, $1)`, len(cs))
	if err != nil {
		return nil, fmt.Errorf("number changes: %w", err)
	}
	out := make([]changes.Change, 0, len(cs))
	for rows.Next() {
		c := cs[len(out)]
		if err := rows.Scan(&c.Seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("number changes: %w", err)
		}
		c.AccountID, c.TaskID = accountID, taskID
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("number changes: %w", err)
	}
	return out, s.insertChanges(ctx, tx, out)
}

// insertChanges writes numbered changes, as many rows per statement as the dialect prefers.
func (s *Store) insertChanges(ctx context.Context, tx txn, out []changes.Change) error {
	rows := s.dialect.changeRows
	var (
		full *sql.Stmt
		args = make([]any, 0, rows*changeColumns)
	)
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for rest := out; len(rest) > 0; {
		chunk := rest[:min(rows, len(rest))]
		rest = rest[len(chunk):]
		args = args[:0]
		for _, c := range chunk {
			args = append(args, c.AccountID, c.Seq, string(c.Kind), c.Folder, int64(c.UID), c.TaskID, string(c.Data))
		}
		var err error
		if len(chunk) == rows {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, insertChangesSQL(rows)); err != nil {
					return fmt.Errorf("prepare change insert: %w", err)
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertChangesSQL(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("write changes %d to %d: %w", chunk[0].Seq, chunk[len(chunk)-1].Seq, err)
		}
	}
	return nil
}

// OnChanges sets fn to be called after every commit that wrote changes, with the account and
// the changes it committed, numbered. It is for waiting readers (a stream, a webhook deliverer)
// and the changes-written metric: a hint, since the table stays the truth; fn must neither block
// nor keep or change the slice. Call it before the Store is used.
func (s *Store) OnChanges(fn func(accountID int64, committed []changes.Change)) { s.changed = fn }

// insertChangesSQL is the INSERT of n change rows; created_at is the database clock.
func insertChangesSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO changes (account_id, seq, kind, folder, uid, task_id, data, created_at) VALUES `)
	const bound = changeColumns - 1 // created_at is not bound
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range bound {
			fmt.Fprintf(&b, "$%d, ", i*bound+c+1)
		}
		b.WriteString("{{now}})")
	}
	return b.String()
}

// Changes returns up to limit changes of the account after seq after, in order. A cursor the
// retention window has passed (after below the account's pruning floor) is changes.ErrGone.
func (s *Store) Changes(ctx context.Context, accountID, after int64, limit int) ([]changes.Change, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT account_id, seq, kind, folder, uid, task_id, data, created_at FROM changes
		WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, accountID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes of account %d: %w", accountID, err)
	}
	defer rows.Close()
	var out []changes.Change
	for rows.Next() {
		var (
			c       changes.Change
			kind    string
			uid, at int64
			data    string
		)
		if err := rows.Scan(&c.AccountID, &c.Seq, &kind, &c.Folder, &uid, &c.TaskID, &data, &at); err != nil {
			return nil, fmt.Errorf("store: changes of account %d: %w", accountID, err)
		}
		c.Kind, c.UID, c.At, c.Data = changes.Kind(kind), uint32(uid), fromMillis(at), []byte(data)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes of account %d: %w", accountID, err)
	}
	// The log has no gaps and pruning removes a prefix, so a first row past after+1 means the
	// rows the reader asked for were pruned. No row at all (the reader is caught up, or
	// everything after it was pruned) is told apart by the floor, read only then: the read of a
	// reader that has something to read costs one query.
	if len(out) > 0 {
		if out[0].Seq != after+1 && (s.hooks == nil || !s.hooks.sequence) {
			return nil, fmt.Errorf("store: changes of account %d after %d (oldest kept is %d): %w",
				accountID, after, out[0].Seq, changes.ErrGone)
		}
		return out, nil
	}
	head, err := s.ChangeHead(ctx, accountID)
	if err != nil {
		return nil, err
	}
	if after < head.Floor {
		return nil, fmt.Errorf("store: changes of account %d after %d (oldest kept is %d): %w",
			accountID, after, head.Floor+1, changes.ErrGone)
	}
	return nil, nil
}

// ChangeHead is the extent of an account's change log: changes Floor+1 to Last are kept.
type ChangeHead struct {
	Last  int64
	Floor int64
}

// ChangeHead reads the account's change head; an account without changes has the zero head.
func (s *Store) ChangeHead(ctx context.Context, accountID int64) (ChangeHead, error) {
	var h ChangeHead
	err := s.read.QueryRowContext(ctx, `SELECT last_seq, floor FROM change_heads WHERE account_id = $1`,
		accountID).Scan(&h.Last, &h.Floor)
	if errors.Is(err, sql.ErrNoRows) {
		return ChangeHead{}, nil
	}
	if err != nil {
		return ChangeHead{}, fmt.Errorf("store: change head of account %d: %w", accountID, err)
	}
	return h, nil
}

// PruneChanges removes changes written before cutoff, at most about max of them per call (a
// background job calls it until it returns 0, so each call holds the writer briefly). Within an
// account it removes a prefix of the log and raises the floor to match, so the log never has a
// hole and a cursor into the removed part is told it is gone.
func (s *Store) PruneChanges(ctx context.Context, cutoff time.Time, max int) (int, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT account_id, MAX(seq) FROM (
			SELECT account_id, seq FROM changes WHERE created_at < $1 ORDER BY created_at, account_id, seq LIMIT $2
		) oldest GROUP BY account_id`, cutoff.UnixMilli(), max)
	if err != nil {
		return 0, fmt.Errorf("store: prune changes: %w", err)
	}
	floors := map[int64]int64{}
	for rows.Next() {
		var id, seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: prune changes: %w", err)
		}
		floors[id] = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: prune changes: %w", err)
	}
	removed := 0
	for id, floor := range floors {
		err := s.inTx(ctx, func(tx txn) error {
			// The head first: its lock orders this prune with the account's writers.
			if _, err := tx.ExecContext(ctx, `UPDATE change_heads SET floor = $2 WHERE account_id = $1 AND floor < $2`,
				id, floor); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE account_id = $1 AND seq <= $2`, id, floor)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			removed += int(n)
			return err
		})
		if err != nil {
			return removed, fmt.Errorf("store: prune changes of account %d: %w", id, err)
		}
	}
	return removed, nil
}

// tasksEnded writes, in tx (the transaction that ended them), the sync.* change of every task of
// ts that is now terminal: one change per task end, whoever ended it. Tasks still active (a
// reap that put one back in the queue) say nothing: their sync goes on.
func (s *Store) tasksEnded(ctx context.Context, tx txn, ts []task.Task) error {
	ended := make([]task.Task, 0, len(ts))
	for _, t := range ts {
		if !t.State.Active() {
			ended = append(ended, t)
		}
	}
	// In account order: a transaction that ends tasks of several accounts (a reap) takes their
	// change heads in one order, whatever order the engine returned its rows in.
	slices.SortFunc(ended, func(a, b task.Task) int {
		return cmp.Or(cmp.Compare(a.AccountID, b.AccountID), cmp.Compare(a.ID, b.ID))
	})
	for _, t := range ended {
		if _, err := s.appendChanges(ctx, tx, t.AccountID, t.ID, []changes.Change{syncChange(t)}); err != nil {
			return err
		}
	}
	return nil
}

// syncChange is the change that says a task ended: sync.succeeded, or sync.failed for a failed or
// cancelled task, with its counts and error.
func syncChange(t task.Task) changes.Change {
	kind := changes.SyncFailed
	if t.State == task.Succeeded {
		kind = changes.SyncSucceeded
	}
	return changes.New(kind, "", 0, changes.Sync{TaskID: t.ID, State: string(t.State), Attempt: t.Attempt,
		New: int64(t.Progress.New), Updated: int64(t.Progress.Updated), Deleted: int64(t.Progress.Deleted), Error: t.Error})
}
