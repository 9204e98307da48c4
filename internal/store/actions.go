package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/changes"
	"mailsync/internal/task"
)

// Actions on mail (migration 00013, package action, docs/actions.md). An action is created by the
// API or the CLI and applied by the account's task; every write of a task to an action begins with
// the task's fenced heartbeat and matches the action's task_id and epoch, so a task that lost its
// lease can neither apply an action nor record that it did.

const actionColumns = `id, account_id, user_id, kind, state, request, attempts, next_attempt_at,
	COALESCE(task_id, ''), result, error, created_at, updated_at, finished_at`

func scanAction(row rowScanner, extra ...any) (action.Action, error) {
	var (
		a                        action.Action
		request, result          string
		nextAt, created, updated int64
		finished                 sql.NullInt64
		kind, state              string
	)
	dest := []any{&a.ID, &a.AccountID, &a.UserID, &kind, &state, &request, &a.Attempts, &nextAt,
		&a.TaskID, &result, &a.Error, &created, &updated, &finished}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return action.Action{}, err
	}
	a.Kind, a.State = action.Kind(kind), action.State(state)
	if err := json.Unmarshal([]byte(request), &a.Request); err != nil {
		return action.Action{}, fmt.Errorf("action %d: request: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(result), &a.Result); err != nil {
		return action.Action{}, fmt.Errorf("action %d: result: %w", a.ID, err)
	}
	if nextAt != 0 {
		a.NextAttemptAt = fromMillis(nextAt)
	}
	a.CreatedAt, a.UpdatedAt, a.FinishedAt = fromMillis(created), fromMillis(updated), fromNullMillis(finished)
	return a, nil
}

func scanActions(rows *sql.Rows) ([]action.Action, error) {
	defer rows.Close()
	var out []action.Action
	for rows.Next() {
		a, err := scanAction(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// requestHash identifies what was asked, to tell a reuse of an Idempotency-Key for another request.
func requestHash(n action.New, request []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00", n.AccountID, n.Kind)
	if n.Fingerprint != nil {
		h.Write(n.Fingerprint)
	} else {
		h.Write(request)
		h.Write([]byte{0})
		h.Write(n.Raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CreateAction stores a new pending action and returns it with created true. With an
// Idempotency-Key the user already used, it stores nothing and returns the action of that key
// (created false), however many callers race with the same key: the unique (user_id,
// idempotency_key) decides. The same key with another request is action.ErrKeyReused.
func (s *Store) CreateAction(ctx context.Context, n action.New) (action.Action, bool, error) {
	if !n.Kind.Valid() {
		return action.Action{}, false, fmt.Errorf("store: create action: unknown kind %q", n.Kind)
	}
	request, err := json.Marshal(n.Request)
	if err != nil {
		return action.Action{}, false, fmt.Errorf("store: create action: %w", err)
	}
	hash := requestHash(n, request)
	var key sql.NullString
	if n.Key != "" {
		key = sql.NullString{String: n.Key, Valid: true}
	}
	var id int64
	err = s.write.QueryRowContext(ctx, `
		INSERT INTO actions (account_id, user_id, idempotency_key, request_hash, kind, request, raw, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, {{now}}, {{now}})
		ON CONFLICT (user_id, idempotency_key) DO NOTHING
		RETURNING id`, n.AccountID, n.UserID, key, hash, string(n.Kind), string(request), n.Raw).Scan(&id)
	switch {
	case err == nil:
		a, err := s.Action(ctx, id)
		return a, true, err
	case !errors.Is(err, sql.ErrNoRows):
		return action.Action{}, false, fmt.Errorf("store: create action: %w", s.busy(err))
	}
	// The key was taken: by this request (a retry), or by another one.
	var stored string
	row := s.write.QueryRowContext(ctx, `SELECT `+actionColumns+`, request_hash FROM actions WHERE user_id = $1 AND idempotency_key = $2`,
		n.UserID, n.Key)
	a, err := scanAction(row, &stored)
	if err != nil {
		return action.Action{}, false, fmt.Errorf("store: create action: key %q: %w", n.Key, err)
	}
	if stored != hash {
		return action.Action{}, false, fmt.Errorf("store: create action: %w", action.ErrKeyReused)
	}
	return a, false, nil
}

// Action returns one action (without its composed message); ErrNotFound when there is none.
func (s *Store) Action(ctx context.Context, id int64) (action.Action, error) {
	a, err := scanAction(s.read.QueryRowContext(ctx, `SELECT `+actionColumns+` FROM actions WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return action.Action{}, fmt.Errorf("store: action %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return action.Action{}, fmt.Errorf("store: action %d: %w", id, err)
	}
	return a, nil
}

// AccountActions returns the account's actions, newest first, at most limit; only the open ones
// when open is set.
func (s *Store) AccountActions(ctx context.Context, accountID int64, open bool, limit int) ([]action.Action, error) {
	q := `SELECT ` + actionColumns + ` FROM actions WHERE account_id = $1`
	if open {
		q += ` AND finished_at IS NULL`
	}
	rows, err := s.read.QueryContext(ctx, q+` ORDER BY id DESC LIMIT $2`, accountID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: actions of account %d: %w", accountID, err)
	}
	out, err := scanActions(rows)
	if err != nil {
		return nil, fmt.Errorf("store: actions of account %d: %w", accountID, err)
	}
	return out, nil
}

// OpenActions returns the account's open actions in the order they apply (by id), without their
// composed messages: what the pending overlay and the push read. It is one indexed read that
// finds nothing on an account with nothing waiting.
func (s *Store) OpenActions(ctx context.Context, accountID int64) ([]action.Action, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+actionColumns+` FROM actions
		WHERE account_id = $1 AND finished_at IS NULL ORDER BY id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("store: open actions of account %d: %w", accountID, err)
	}
	out, err := scanActions(rows)
	if err != nil {
		return nil, fmt.Errorf("store: open actions of account %d: %w", accountID, err)
	}
	return out, nil
}

// ActionMessage returns the composed message of a send or draft.
func (s *Store) ActionMessage(ctx context.Context, id int64) ([]byte, error) {
	var raw []byte
	if err := s.read.QueryRowContext(ctx, `SELECT raw FROM actions WHERE id = $1`, id).Scan(&raw); err != nil {
		return nil, fmt.Errorf("store: message of action %d: %w", id, err)
	}
	return raw, nil
}

// TakeAction is a task's first write to an open action, fenced by its lease: it records the task
// and counts the attempt, and returns the action as the task must go on with it.
//
//   - pending, running (a dead taker's): running, attempts + 1;
//   - sent (a dead taker's, after the SMTP server accepted it): stays sent, attempts + 1: only the
//     copy for Sent is left to save;
//   - submitting (a dead taker was handing it to the SMTP server): unknown, final. Whether the
//     server took it nobody knows; it is never sent again by itself;
//   - past action.MaxAttempts: failed, final; a sent one is done, its error saying that the copy
//     for Sent could not be saved (it went out: it never fails).
//
// A lost lease is task.ErrLeaseLost and changes nothing.
func (s *Store) TakeAction(ctx context.Context, l task.Lease, p task.Progress, id int64) (action.Action, error) {
	var out action.Action
	err := s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		var err error
		out, err = scanAction(tx.QueryRowContext(ctx, `
			UPDATE actions SET
				state = CASE WHEN state = 'submitting' THEN 'unknown'
					WHEN attempts >= $4 AND state = 'sent' THEN 'done'
					WHEN attempts >= $4 THEN 'failed'
					WHEN state = 'sent' THEN 'sent' ELSE 'running' END,
				error = CASE WHEN state = 'submitting' THEN $5
					WHEN attempts >= $4 AND state = 'sent' THEN $7 || error
					WHEN attempts >= $4 THEN $6 || error ELSE error END,
				finished_at = CASE WHEN state = 'submitting' OR attempts >= $4 THEN {{now}} END,
				attempts = CASE WHEN state = 'submitting' OR attempts >= $4 THEN attempts ELSE attempts + 1 END,
				task_id = $2, epoch = $3, updated_at = {{now}}
			WHERE id = $1 AND finished_at IS NULL
			RETURNING `+actionColumns, id, l.TaskID, l.Epoch, action.MaxAttempts,
			"interrupted while the SMTP server was being handed the message: it may or may not have been sent; retry to send it again",
			fmt.Sprintf("given up after %d attempts; last error: ", action.MaxAttempts),
			fmt.Sprintf("sent; the copy for Sent was not saved after %d attempts; last error: ", action.MaxAttempts)))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("action %d: %w", id, action.ErrNotOpen)
		}
		return err
	})
	if err != nil {
		return action.Action{}, fmt.Errorf("store: take action %d: %w", id, err)
	}
	return out, nil
}

// MarkSubmitting records, fenced, that a send is about to be handed to the SMTP server (right
// before DATA): from here a crash leaves it unknown rather than sending it twice.
func (s *Store) MarkSubmitting(ctx context.Context, l task.Lease, p task.Progress, id int64) error {
	return s.moveAction(ctx, l, p, id, "running", "submitting", "")
}

// MarkSent records, fenced, the SMTP server's acceptance of a send.
func (s *Store) MarkSent(ctx context.Context, l task.Lease, p task.Progress, id int64, answer string) error {
	result, err := json.Marshal(action.Result{SMTP: answer})
	if err != nil {
		return fmt.Errorf("store: action %d sent: %w", id, err)
	}
	return s.moveAction(ctx, l, p, id, "submitting", "sent", string(result))
}

// moveAction moves an action taken by l from one open state to another, fenced; result, when not
// "", replaces its result.
func (s *Store) moveAction(ctx context.Context, l task.Lease, p task.Progress, id int64, from, to, result string) error {
	err := s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `
			UPDATE actions SET state = $5, updated_at = {{now}},
				result = CASE WHEN $6 = '' THEN result ELSE $6 END
			WHERE id = $1 AND task_id = $2 AND epoch = $3 AND state = $4`, id, l.TaskID, l.Epoch, from, to, result)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, task.ErrLeaseLost)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: action %d %s: %w", id, to, err)
	}
	return nil
}

// Outcome is how an attempt at an action ended, and what it changed on the server that the
// store must reflect at once (Local), without waiting for the next pull.
type Outcome struct {
	// State is the action's new state: a final one, or Pending to be tried again at RetryAt.
	State   action.State
	Error   string
	Result  action.Result
	RetryAt time.Time
	Local   []LocalEdit
}

// LocalEdit is one stored message changed as the server now has it.
type LocalEdit struct {
	Message int64
	// Flags, when not nil, are the message's new flags.
	Flags []string
	// Removed: the message left its folder (expunged, or moved where the store cannot follow).
	Removed bool
	// MovedTo and UID: the message is now UID in the folder MovedTo (from COPYUID), whose
	// UIDVALIDITY is UIDValidity. The stored row follows it, bytes and all: nothing is downloaded
	// again.
	MovedTo     string
	UID         uint32
	UIDValidity uint32
}

// FinishAction ends an attempt, fenced: the action's new state and the local edits of what it
// did, with their changes in the change log, in one transaction that begins with the task's
// heartbeat. A lost lease writes nothing.
func (s *Store) FinishAction(ctx context.Context, l task.Lease, p task.Progress, id int64, o Outcome) (action.Action, error) {
	result, err := json.Marshal(o.Result)
	if err != nil {
		return action.Action{}, fmt.Errorf("store: finish action %d: %w", id, err)
	}
	var out action.Action
	err = s.inTx(ctx, func(tx txn) error {
		if _, err := s.heartbeat(ctx, tx, l, p, time.Time{}); err != nil {
			return err
		}
		final := !o.State.Open()
		var err error
		out, err = scanAction(tx.QueryRowContext(ctx, `
			UPDATE actions SET state = $4, error = $5, result = $6, next_attempt_at = $7, updated_at = {{now}},
				finished_at = CASE WHEN $8 THEN {{now}} END
			WHERE id = $1 AND task_id = $2 AND epoch = $3 AND finished_at IS NULL
			RETURNING `+actionColumns, id, l.TaskID, l.Epoch, string(o.State), o.Error, string(result),
			o.RetryAt.UnixMilli()*boolInt(!o.RetryAt.IsZero()), final))
		if errors.Is(err, sql.ErrNoRows) {
			return task.ErrLeaseLost
		}
		if err != nil {
			return err
		}
		log, err := applyLocal(ctx, tx, out.AccountID, o.Local)
		if err != nil {
			return err
		}
		_, err = s.appendChanges(ctx, tx, out.AccountID, l.TaskID, log)
		return err
	})
	if err != nil {
		return action.Action{}, fmt.Errorf("store: finish action %d: %w", id, err)
	}
	return out, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// applyLocal writes the local edits and returns their changes.
func applyLocal(ctx context.Context, tx txn, accountID int64, edits []LocalEdit) ([]changes.Change, error) {
	var log []changes.Change
	for _, e := range edits {
		var (
			folder, messageID, subject, from, flags string
			uid, size                               int64
			date                                    sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, `
			SELECT f.name, m.uid, m.message_id, m.subject, m.from_addr, m.date, m.flags, m.size
			FROM messages m JOIN folders f ON f.id = m.folder_id
			WHERE m.id = $1 AND m.account_id = $2`, e.Message, accountID).
			Scan(&folder, &uid, &messageID, &subject, &from, &date, &flags, &size)
		if errors.Is(err, sql.ErrNoRows) {
			continue // gone meanwhile (a reset, an account edit): nothing left to edit
		}
		if err != nil {
			return nil, fmt.Errorf("local edit of message %d: %w", e.Message, err)
		}
		oldFlags := strings.Fields(flags)
		newFlags := oldFlags
		if e.Flags != nil {
			newFlags = e.Flags
		}
		gone := func() error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = $1`, e.Message); err != nil {
				return fmt.Errorf("local edit of message %d: %w", e.Message, err)
			}
			log = append(log, changes.New(changes.MessageDeleted, folder, uint32(uid), changes.MessageGone{MessageID: messageID}))
			return nil
		}
		switch {
		case e.Removed:
			if err := gone(); err != nil {
				return nil, err
			}
		case e.MovedTo != "":
			// The row follows the message when the destination is stored under the UIDVALIDITY the
			// server gave and does not hold the UID yet; otherwise the copy there is the pull's.
			var destID int64
			var destValidity int64
			err := tx.QueryRowContext(ctx, `SELECT id, uidvalidity FROM folders WHERE account_id = $1 AND name = $2`,
				accountID, e.MovedTo).Scan(&destID, &destValidity)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("local move of message %d: %w", e.Message, err)
			}
			var taken int
			if err == nil {
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE folder_id = $1 AND uid = $2`,
					destID, int64(e.UID)).Scan(&taken); err != nil {
					return nil, fmt.Errorf("local move of message %d: %w", e.Message, err)
				}
			}
			if err != nil || e.UID == 0 || uint32(destValidity) != e.UIDValidity || taken > 0 {
				if err := gone(); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET folder_id = $1, uid = $2, flags = $3 WHERE id = $4`,
				destID, int64(e.UID), strings.Join(newFlags, " "), e.Message); err != nil {
				return nil, fmt.Errorf("local move of message %d: %w", e.Message, err)
			}
			log = append(log,
				changes.New(changes.MessageDeleted, folder, uint32(uid), changes.MessageGone{MessageID: messageID}),
				changes.New(changes.MessageCreated, e.MovedTo, e.UID, changes.Message{
					UIDValidity: e.UIDValidity, MessageID: messageID, Subject: subject, From: from,
					Date: fromNullMillis(date), Flags: flagList(newFlags), Size: size}))
		case e.Flags != nil && !sameFlags(oldFlags, newFlags):
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET flags = $1 WHERE id = $2`,
				strings.Join(newFlags, " "), e.Message); err != nil {
				return nil, fmt.Errorf("local flags of message %d: %w", e.Message, err)
			}
			log = append(log, changes.New(changes.MessageUpdated, folder, uint32(uid),
				changes.FlagUpdate{OldFlags: flagList(oldFlags), Flags: flagList(newFlags)}))
		}
	}
	return log, nil
}

// RetryAction puts a failed, conflicting or unknown action back to pending, its attempts counted
// afresh; action.ErrNotOpen for any other state.
func (s *Store) RetryAction(ctx context.Context, id int64) (action.Action, error) {
	return s.setOpenState(ctx, id, `UPDATE actions SET state = 'pending', attempts = 0, next_attempt_at = 0,
		error = '', finished_at = NULL, updated_at = {{now}}
		WHERE id = $1 AND state IN ('failed', 'conflict', 'unknown') RETURNING `+actionColumns)
}

// CancelAction withdraws a pending action; action.ErrNotOpen once a task has taken it or it is over.
func (s *Store) CancelAction(ctx context.Context, id int64) (action.Action, error) {
	return s.setOpenState(ctx, id, `UPDATE actions SET state = 'cancelled', finished_at = {{now}}, updated_at = {{now}}
		WHERE id = $1 AND state = 'pending' RETURNING `+actionColumns)
}

func (s *Store) setOpenState(ctx context.Context, id int64, stmt string) (action.Action, error) {
	a, err := scanAction(s.write.QueryRowContext(ctx, stmt, id))
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.Action(ctx, id); err != nil {
			return action.Action{}, err
		}
		return action.Action{}, fmt.Errorf("store: action %d: %w", id, action.ErrNotOpen)
	}
	if err != nil {
		return action.Action{}, fmt.Errorf("store: action %d: %w", id, s.busy(err))
	}
	return a, nil
}

// AccountsWithDueActions lists the accounts that have an action due (open, not held back by a
// retry time after now) and no active task: the actions a task ended without, or that a
// temporary failure held back, are started this way. An account whose last task failed less than
// failedWait ago is left out (a wrong password must not be tried every few seconds for its
// actions), and so is one waiting for its owner to sign in again. now zero: the database clock.
func (s *Store) AccountsWithDueActions(ctx context.Context, now time.Time, failedWait time.Duration) ([]int64, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT DISTINCT a.account_id FROM actions a JOIN accounts ac ON ac.id = a.account_id
		WHERE a.finished_at IS NULL AND a.next_attempt_at <= COALESCE($1, {{now}}) AND ac.auth_state = 'ok'
			AND NOT EXISTS (SELECT 1 FROM sync_tasks t WHERE t.account_id = a.account_id AND t.state IN ('queued', 'running'))
			AND NOT EXISTS (SELECT 1 FROM sync_tasks t WHERE t.account_id = a.account_id AND t.state = 'failed'
				AND t.finished_at > COALESCE($1, {{now}}) - $2)
		ORDER BY a.account_id`, at(now), millis(failedWait))
	if err != nil {
		return nil, fmt.Errorf("store: accounts with due actions: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: accounts with due actions: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// MessageRef is where a stored message is on its server, for an action.
type MessageRef struct {
	ID          int64
	Folder      string
	UIDValidity uint32
	UID         uint32
	Flags       []string
	MessageID   string
	// HighestModSeq is the folder's stored HIGHESTMODSEQ: no message of it is known to have
	// changed after it (0: the server does no CONDSTORE).
	HighestModSeq uint64
}

// MessageRefs returns where the messages ids of the account are, by id; ids not stored (any more)
// are absent.
func (s *Store) MessageRefs(ctx context.Context, accountID int64, ids []int64) (map[int64]MessageRef, error) {
	out := make(map[int64]MessageRef, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := []any{accountID}
		marks := make([]string, len(chunk))
		for i, id := range chunk {
			args = append(args, id)
			marks[i] = fmt.Sprintf("$%d", i+2)
		}
		rows, err := s.read.QueryContext(ctx, `
			SELECT m.id, f.name, f.uidvalidity, m.uid, m.flags, m.message_id, f.highestmodseq
			FROM messages m JOIN folders f ON f.id = m.folder_id
			WHERE m.account_id = $1 AND m.id IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: messages of account %d: %w", accountID, err)
		}
		for rows.Next() {
			var (
				r             MessageRef
				validity, uid int64
				modseq        int64
				flags         string
			)
			if err := rows.Scan(&r.ID, &r.Folder, &validity, &uid, &flags, &r.MessageID, &modseq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: messages of account %d: %w", accountID, err)
			}
			r.UIDValidity, r.UID, r.Flags, r.HighestModSeq = uint32(validity), uint32(uid), strings.Fields(flags), uint64(modseq)
			out[r.ID] = r
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: messages of account %d: %w", accountID, err)
		}
		rows.Close()
	}
	return out, nil
}

// StoredUIDsFrom returns the UIDs a folder stores from uid on: messages an action moved in (from
// COPYUID) above the checkpoint's UIDNEXT, which the next pull must not download again.
func (s *Store) StoredUIDsFrom(ctx context.Context, folderID int64, from uint32) ([]uint32, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT uid FROM messages WHERE folder_id = $1 AND uid >= $2 ORDER BY uid`,
		folderID, int64(from))
	if err != nil {
		return nil, fmt.Errorf("store: uids of folder %d: %w", folderID, err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var uid int64
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("store: uids of folder %d: %w", folderID, err)
		}
		out = append(out, uint32(uid))
	}
	return out, rows.Err()
}
