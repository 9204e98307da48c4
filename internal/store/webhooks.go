package store

import (
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

// Webhook is an endpoint that is sent the change log of some of its user's accounts
// (migration 00010 says why the cursors are the outbox). SecretEnc is the signing secret sealed
// under the server key; the store never holds it in the clear.
type Webhook struct {
	ID     int64
	UserID int64
	URL    string
	// Kinds are the change kinds sent; empty: every kind.
	Kinds []changes.Kind
	// AllAccounts sends every account of the user, those added later included; otherwise
	// AccountIDs are the accounts sent.
	AllAccounts bool
	AccountIDs  []int64
	SecretEnc   []byte
	// Enabled is false once DisabledReason says why deliveries stopped.
	Enabled        bool
	DisabledReason string
	CreatedAt      time.Time
}

// Wants reports whether the endpoint is sent changes of kind k.
func (w Webhook) Wants(k changes.Kind) bool { return len(w.Kinds) == 0 || slices.Contains(w.Kinds, k) }

const webhookColumns = `id, user_id, url, kinds, all_accounts, secret_enc, enabled, disabled_reason, created_at`

func scanWebhook(row rowScanner) (Webhook, error) {
	var (
		w       Webhook
		kinds   string
		created int64
	)
	if err := row.Scan(&w.ID, &w.UserID, &w.URL, &kinds, &w.AllAccounts, &w.SecretEnc, &w.Enabled,
		&w.DisabledReason, &created); err != nil {
		return Webhook{}, err
	}
	w.Kinds = splitKinds(kinds)
	w.CreatedAt = fromMillis(created)
	return w, nil
}

func joinKinds(ks []changes.Kind) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = string(k)
	}
	return strings.Join(parts, ",")
}

func splitKinds(s string) []changes.Kind {
	if s == "" {
		return nil
	}
	var out []changes.Kind
	for _, p := range strings.Split(s, ",") {
		out = append(out, changes.Kind(p))
	}
	return out
}

// checkWebhook refuses what the table's constraints would refuse, with a message that says why.
func checkWebhook(w Webhook) error {
	for _, k := range w.Kinds {
		if !k.Valid() {
			return fmt.Errorf("store: webhook: unknown change kind %q", k)
		}
	}
	if w.Enabled != (w.DisabledReason == "") {
		return errors.New("store: webhook: a disabled endpoint needs a reason, an enabled one has none")
	}
	return nil
}

// CreateWebhook adds an endpoint. seal is given the new row's id and returns the sealed secret
// (the id is bound into it, so a sealed secret copied onto another row does not open). The
// endpoint starts at the accounts' current heads: it is sent what changes from now on.
func (s *Store) CreateWebhook(ctx context.Context, w Webhook, seal func(id int64) []byte) (Webhook, error) {
	w.Enabled, w.DisabledReason = true, ""
	if err := checkWebhook(w); err != nil {
		return Webhook{}, err
	}
	var out Webhook
	err := s.inTx(ctx, func(tx txn) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `
			INSERT INTO webhooks (user_id, url, kinds, all_accounts, secret_enc, created_at)
			VALUES ($1, $2, $3, $4, $5, COALESCE($6, {{now}})) RETURNING id`,
			w.UserID, w.URL, joinKinds(w.Kinds), w.AllAccounts, []byte{}, at(w.CreatedAt)).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET secret_enc = $2 WHERE id = $1`, id, seal(id)); err != nil {
			return err
		}
		if err := addCursors(ctx, tx, id, w.UserID, w.AllAccounts, w.AccountIDs); err != nil {
			return err
		}
		var err error
		out, err = webhookIn(ctx, tx, id)
		return err
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("store: create webhook: %w", err)
	}
	return out, nil
}

// addCursors gives the endpoint a cursor at the current head of each account (every account of
// the user when all is set) that it has none for. An account of another user is refused.
func addCursors(ctx context.Context, tx txn, webhookID, userID int64, all bool, accountIDs []int64) error {
	if all {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO webhook_cursors (webhook_id, account_id, delivered_seq)
			SELECT $1, a.id, COALESCE(h.last_seq, 0) FROM accounts a LEFT JOIN change_heads h ON h.account_id = a.id
			WHERE a.user_id = $2
			ON CONFLICT (webhook_id, account_id) DO NOTHING`, webhookID, userID)
		return err
	}
	for _, id := range accountIDs {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO webhook_cursors (webhook_id, account_id, delivered_seq)
			SELECT $1, a.id, COALESCE(h.last_seq, 0) FROM accounts a LEFT JOIN change_heads h ON h.account_id = a.id
			WHERE a.id = $3 AND a.user_id = $2
			ON CONFLICT (webhook_id, account_id) DO NOTHING`, webhookID, userID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var mine bool
			if err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM accounts WHERE id = $1 AND user_id = $2`,
				id, userID).Scan(&mine); err != nil {
				return err
			}
			if !mine {
				return fmt.Errorf("account %d: %w", id, ErrNotFound)
			}
		}
	}
	return nil
}

func webhookIn(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, id int64) (Webhook, error) {
	w, err := scanWebhook(q.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, fmt.Errorf("webhook %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Webhook{}, err
	}
	rows, err := q.QueryContext(ctx, `SELECT account_id FROM webhook_cursors WHERE webhook_id = $1 ORDER BY account_id`, id)
	if err != nil {
		return Webhook{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var a int64
		if err := rows.Scan(&a); err != nil {
			return Webhook{}, err
		}
		w.AccountIDs = append(w.AccountIDs, a)
	}
	return w, rows.Err()
}

// Webhook returns one endpoint with the accounts it has a cursor for.
func (s *Store) Webhook(ctx context.Context, id int64) (Webhook, error) {
	w, err := webhookIn(ctx, s.read, id)
	if err != nil {
		return Webhook{}, fmt.Errorf("store: %w", err)
	}
	return w, nil
}

// Webhooks lists a user's endpoints (every user's when userID is 0), by id.
func (s *Store) Webhooks(ctx context.Context, userID int64) ([]Webhook, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE $1 = 0 OR user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: webhooks: %w", err)
	}
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: webhooks: %w", err)
		}
		out = append(out, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: webhooks: %w", err)
	}
	cursors, err := s.read.QueryContext(ctx, `SELECT webhook_id, account_id FROM webhook_cursors c
		WHERE $1 = 0 OR EXISTS (SELECT 1 FROM webhooks w WHERE w.id = c.webhook_id AND w.user_id = $1)
		ORDER BY webhook_id, account_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: webhooks: %w", err)
	}
	defer cursors.Close()
	byID := map[int64]*Webhook{}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	for cursors.Next() {
		var wid, aid int64
		if err := cursors.Scan(&wid, &aid); err != nil {
			return nil, fmt.Errorf("store: webhooks: %w", err)
		}
		if w := byID[wid]; w != nil {
			w.AccountIDs = append(w.AccountIDs, aid)
		}
	}
	if err := cursors.Err(); err != nil {
		return nil, fmt.Errorf("store: webhooks: %w", err)
	}
	return out, nil
}

// UpdateWebhook rewrites an endpoint's URL, kinds, accounts, secret and enabled state. An account
// added to the endpoint starts at its current head; one removed loses its cursor. Enabling a
// disabled endpoint resumes every cursor where it stopped, with a fresh retry budget: nothing is
// skipped.
func (s *Store) UpdateWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	if err := checkWebhook(w); err != nil {
		return Webhook{}, err
	}
	var out Webhook
	err := s.inTx(ctx, func(tx txn) error {
		var wasEnabled bool
		err := tx.QueryRowContext(ctx, `SELECT enabled FROM webhooks WHERE id = $1`, w.ID).Scan(&wasEnabled)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("webhook %d: %w", w.ID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhooks SET url = $2, kinds = $3, all_accounts = $4, secret_enc = $5, enabled = $6, disabled_reason = $7
			WHERE id = $1`, w.ID, w.URL, joinKinds(w.Kinds), w.AllAccounts, w.SecretEnc, w.Enabled, w.DisabledReason); err != nil {
			return err
		}
		if !w.AllAccounts {
			keep := map[int64]bool{}
			for _, id := range w.AccountIDs {
				keep[id] = true
			}
			current, err := webhookIn(ctx, tx, w.ID)
			if err != nil {
				return err
			}
			for _, id := range current.AccountIDs {
				if !keep[id] {
					if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_cursors WHERE webhook_id = $1 AND account_id = $2`, w.ID, id); err != nil {
						return err
					}
				}
			}
		}
		if err := addCursors(ctx, tx, w.ID, w.UserID, w.AllAccounts, w.AccountIDs); err != nil {
			return err
		}
		if w.Enabled && !wasEnabled {
			// A cursor that the retention window passed while the endpoint was off continues from
			// the oldest change kept (the disabled reason said so); every other resumes as it was.
			if _, err := tx.ExecContext(ctx, `
				UPDATE webhook_cursors SET failures = 0, failing_since = NULL, next_attempt_at = 0, last_error = '',
					delivered_seq = CASE WHEN delivered_seq < `+floorOf+` THEN `+floorOf+` ELSE delivered_seq END
				WHERE webhook_id = $1`, w.ID); err != nil {
				return err
			}
		}
		out, err = webhookIn(ctx, tx, w.ID)
		return err
	})
	if err != nil {
		return Webhook{}, fmt.Errorf("store: update webhook %d: %w", w.ID, err)
	}
	return out, nil
}

// floorOf is the pruning floor of a cursor's account, in a statement over webhook_cursors.
const floorOf = `COALESCE((SELECT floor FROM change_heads h WHERE h.account_id = webhook_cursors.account_id), 0)`

// DeleteWebhook removes an endpoint with its cursors and attempts.
func (s *Store) DeleteWebhook(ctx context.Context, id int64) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete webhook %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete webhook %d: %w", id, ErrNotFound)
	}
	return nil
}

// DisableWebhook stops deliveries to an endpoint and records why.
func (s *Store) DisableWebhook(ctx context.Context, id int64, reason string) error {
	if reason == "" {
		return errors.New("store: disable webhook: a reason is required")
	}
	if _, err := s.write.ExecContext(ctx, `UPDATE webhooks SET enabled = false, disabled_reason = $2 WHERE id = $1`,
		id, reason); err != nil {
		return fmt.Errorf("store: disable webhook %d: %w", id, err)
	}
	return nil
}

// Delivery is one (endpoint, account) pair a deliverer holds the lease of, with what it needs to
// send: the endpoint and the position of its cursor.
type Delivery struct {
	Webhook   Webhook
	AccountID int64
	// Delivered is the last change the receiver acknowledged.
	Delivered int64
	// Head is the account's last change when the pair was claimed.
	Head         int64
	Owner        string
	Epoch        int64
	Failures     int
	FailingSince time.Time
}

// ClaimDeliveries takes the lease (for lease) of up to max pairs that have undelivered changes,
// belong to an enabled endpoint, are due (next_attempt_at passed) and are not leased by a live
// deliverer. On PostgreSQL concurrent claimers skip each other's rows (SKIP LOCKED), so every
// instance can run a deliverer. A lease whose holder died simply expires. First it gives the
// endpoints that send every account a cursor for accounts added since (from their first change).
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, lease time.Duration, max int, now time.Time) ([]Delivery, error) {
	// Most rounds have nothing to do (no endpoint, or every endpoint caught up): one read, beside
	// the writers, answers that, so neither the poll nor the wakeup of every commit takes the
	// write lock (SQLite's only one) for nothing.
	var missing, due bool
	if err := s.read.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM webhooks w JOIN accounts a ON a.user_id = w.user_id
			WHERE w.enabled AND w.all_accounts
			  AND NOT EXISTS (SELECT 1 FROM webhook_cursors c WHERE c.webhook_id = w.id AND c.account_id = a.id)),
		EXISTS (SELECT 1 FROM webhook_cursors c
			JOIN webhooks w ON w.id = c.webhook_id
			JOIN change_heads h ON h.account_id = c.account_id
			WHERE w.enabled AND h.last_seq > c.delivered_seq AND c.next_attempt_at <= COALESCE($1, {{now}})
			  AND (c.owner IS NULL OR c.lease_expires_at < COALESCE($1, {{now}})))`, at(now)).Scan(&missing, &due); err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	if missing {
		if _, err := s.write.ExecContext(ctx, `
			INSERT INTO webhook_cursors (webhook_id, account_id)
			SELECT w.id, a.id FROM webhooks w JOIN accounts a ON a.user_id = w.user_id
			WHERE w.all_accounts AND NOT EXISTS (SELECT 1 FROM webhook_cursors c WHERE c.webhook_id = w.id AND c.account_id = a.id)
			ON CONFLICT (webhook_id, account_id) DO NOTHING`); err != nil {
			return nil, fmt.Errorf("store: claim deliveries: cursors of new accounts: %w", err)
		}
	} else if !due {
		return nil, nil
	}
	lock := ""
	if s.dialect.skipLocked != "" {
		lock = "FOR UPDATE OF c SKIP LOCKED" // lock the cursor only: never a head a writer needs
	}
	rows, err := s.write.QueryContext(ctx, `
		UPDATE webhook_cursors SET owner = $1, epoch = epoch + 1, lease_expires_at = COALESCE($2, {{now}}) + $3
		WHERE (webhook_id, account_id) IN (
			SELECT c.webhook_id, c.account_id FROM webhook_cursors c
			JOIN webhooks w ON w.id = c.webhook_id
			JOIN change_heads h ON h.account_id = c.account_id
			WHERE w.enabled AND h.last_seq > c.delivered_seq AND c.next_attempt_at <= COALESCE($2, {{now}})
			  AND (c.owner IS NULL OR c.lease_expires_at < COALESCE($2, {{now}}))
			ORDER BY c.next_attempt_at, c.webhook_id, c.account_id LIMIT $4 `+lock+`)
		  AND (owner IS NULL OR lease_expires_at < COALESCE($2, {{now}}))
		RETURNING webhook_id, account_id, delivered_seq, owner, epoch, failures, failing_since`,
		owner, at(now), millis(lease), max)
	if err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	var out []Delivery
	for rows.Next() {
		var (
			d       Delivery
			failing sql.NullInt64
		)
		if err := rows.Scan(&d.Webhook.ID, &d.AccountID, &d.Delivered, &d.Owner, &d.Epoch, &d.Failures, &failing); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: claim deliveries: %w", err)
		}
		d.FailingSince = fromNullMillis(failing)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	for i := range out {
		w, err := s.Webhook(ctx, out[i].Webhook.ID)
		if err != nil {
			return nil, err
		}
		out[i].Webhook = w
		h, err := s.ChangeHead(ctx, out[i].AccountID)
		if err != nil {
			return nil, err
		}
		out[i].Head = h.Last
	}
	return out, nil
}

// Attempt is one POST to an endpoint, as its history shows it.
type Attempt struct {
	ID         int64
	WebhookID  int64
	AccountID  int64 // 0 for a test event
	DeliveryID string
	At         time.Time
	Test       bool
	// Status is the receiver's HTTP status; 0: no answer (refused, timed out, reset).
	Status  int
	Latency time.Duration
	Error   string
	// FirstSeq, LastSeq and Count describe the changes the batch carried (all 0 for none).
	FirstSeq, LastSeq int64
	Count             int
}

// KeepAttempts is how many attempts per endpoint the history keeps.
const KeepAttempts = 100

func recordAttempt(ctx context.Context, tx txn, a Attempt) error {
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO webhook_attempts (webhook_id, account_id, delivery_id, at, test, status, latency_ms, error, first_seq, last_seq, count)
		VALUES ($1, $2, $3, COALESCE($4, {{now}}), $5, $6, $7, $8, $9, $10, $11)`,
		a.WebhookID, a.AccountID, a.DeliveryID, at(a.At), a.Test, a.Status, max(a.Latency.Milliseconds(), 0), a.Error,
		a.FirstSeq, a.LastSeq, a.Count); err != nil {
		return fmt.Errorf("record attempt: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		DELETE FROM webhook_attempts WHERE webhook_id = $1 AND id <= (
			SELECT id FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`,
		a.WebhookID, KeepAttempts); err != nil {
		return fmt.Errorf("trim attempts: %w", err)
	}
	return nil
}

// RecordAttempt adds an attempt that moved no cursor (a test event) to the endpoint's history.
func (s *Store) RecordAttempt(ctx context.Context, a Attempt) error {
	if err := s.inTx(ctx, func(tx txn) error { return recordAttempt(ctx, tx, a) }); err != nil {
		return fmt.Errorf("store: webhook %d: %w", a.WebhookID, err)
	}
	return nil
}

// fence is the WHERE of every write a lease holder makes: the row is still its own.
const fence = `webhook_id = $1 AND account_id = $2 AND owner = $3 AND epoch = $4`

// AdvanceDelivery moves the pair's cursor to seq after the receiver acknowledged the changes up
// to it (or after changes the endpoint does not want), records the attempt when a is not nil, and
// extends the lease by lease. It is fenced: a deliverer whose lease was taken over gets
// task.ErrLeaseLost and has moved nothing.
func (s *Store) AdvanceDelivery(ctx context.Context, d Delivery, seq int64, a *Attempt, lease time.Duration, now time.Time) error {
	err := s.inTx(ctx, func(tx txn) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE webhook_cursors SET delivered_seq = $5, failures = 0, failing_since = NULL, last_error = '',
				next_attempt_at = 0, lease_expires_at = COALESCE($6, {{now}}) + $7
			WHERE `+fence+` AND delivered_seq <= $5`,
			d.Webhook.ID, d.AccountID, d.Owner, d.Epoch, seq, at(now), millis(lease))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return task.ErrLeaseLost
		}
		if a != nil {
			return recordAttempt(ctx, tx, *a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: advance webhook %d account %d to %d: %w", d.Webhook.ID, d.AccountID, seq, err)
	}
	return nil
}

// FailDelivery records a failed attempt and hands the pair back, due again after retryIn. When
// the pair has been failing for giveUpAfter or longer, or disable is set (a receiver's 410), the
// endpoint is disabled with reason; disabled says whether it was. Fenced like AdvanceDelivery.
func (s *Store) FailDelivery(ctx context.Context, d Delivery, a Attempt, retryIn, giveUpAfter time.Duration,
	disable bool, reason string, now time.Time) (disabled bool, err error) {
	err = s.inTx(ctx, func(tx txn) error {
		var failingSince, clock int64
		err := tx.QueryRowContext(ctx, `
			UPDATE webhook_cursors SET failures = failures + 1, failing_since = COALESCE(failing_since, COALESCE($5, {{now}})),
				next_attempt_at = COALESCE($5, {{now}}) + $6, last_error = $7, owner = NULL, lease_expires_at = NULL
			WHERE `+fence+`
			RETURNING failing_since, COALESCE($5, {{now}})`,
			d.Webhook.ID, d.AccountID, d.Owner, d.Epoch, at(now), millis(retryIn), a.Error).Scan(&failingSince, &clock)
		if errors.Is(err, sql.ErrNoRows) {
			return task.ErrLeaseLost
		}
		if err != nil {
			return err
		}
		if err := recordAttempt(ctx, tx, a); err != nil {
			return err
		}
		if !disable && clock-failingSince < millis(giveUpAfter) {
			return nil
		}
		if !disable {
			reason = fmt.Sprintf("deliveries failed for %s since %s (last: %s)",
				time.Duration(clock-failingSince)*time.Millisecond, fromMillis(failingSince).Format(time.RFC3339), a.Error)
		}
		disabled = true
		_, err = tx.ExecContext(ctx, `UPDATE webhooks SET enabled = false, disabled_reason = $2 WHERE id = $1 AND enabled`,
			d.Webhook.ID, reason)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: fail webhook %d account %d: %w", d.Webhook.ID, d.AccountID, err)
	}
	return disabled, nil
}

// ReleaseDelivery hands the pair back without an attempt (the deliverer is stopping, or the
// endpoint was disabled meanwhile). Fenced; a lost lease is not an error here.
func (s *Store) ReleaseDelivery(ctx context.Context, d Delivery) error {
	if _, err := s.write.ExecContext(ctx, `UPDATE webhook_cursors SET owner = NULL, lease_expires_at = NULL WHERE `+fence,
		d.Webhook.ID, d.AccountID, d.Owner, d.Epoch); err != nil {
		return fmt.Errorf("store: release webhook %d account %d: %w", d.Webhook.ID, d.AccountID, err)
	}
	return nil
}

// WebhookAttempts returns the endpoint's last attempts, newest first, at most limit.
func (s *Store) WebhookAttempts(ctx context.Context, webhookID int64, limit int) ([]Attempt, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT id, webhook_id, account_id, delivery_id, at, test, status, latency_ms, error, first_seq, last_seq, count
		FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2`, webhookID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: attempts of webhook %d: %w", webhookID, err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var (
			a           Attempt
			atMs, latMs int64
		)
		if err := rows.Scan(&a.ID, &a.WebhookID, &a.AccountID, &a.DeliveryID, &atMs, &a.Test, &a.Status, &latMs, &a.Error,
			&a.FirstSeq, &a.LastSeq, &a.Count); err != nil {
			return nil, fmt.Errorf("store: attempts of webhook %d: %w", webhookID, err)
		}
		a.At, a.Latency = fromMillis(atMs), time.Duration(latMs)*time.Millisecond
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: attempts of webhook %d: %w", webhookID, err)
	}
	return out, nil
}

// WebhookState is how far behind an endpoint is.
type WebhookState struct {
	WebhookID int64
	// Behind counts the changes of its accounts after its cursors (of every kind: the cursor
	// moves past unwanted kinds when it gets there).
	Behind int64
	// OldestUndelivered is when the oldest change after a cursor was committed (zero: none).
	OldestUndelivered time.Time
	// FailingSince is when the oldest run of failures of its pairs began (zero: none fails).
	FailingSince time.Time
	// LastError is the error of a failing pair.
	LastError string
	// Now is the database clock at the read, for ages.
	Now time.Time
}

// WebhookStates reads the state of every endpoint of the user (every user's when userID is 0).
func (s *Store) WebhookStates(ctx context.Context, userID int64) (map[int64]WebhookState, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT c.webhook_id, c.delivered_seq, COALESCE(h.last_seq, 0), ch.created_at, c.failing_since, c.last_error, {{now}}
		FROM webhook_cursors c
		JOIN webhooks w ON w.id = c.webhook_id
		LEFT JOIN change_heads h ON h.account_id = c.account_id
		LEFT JOIN changes ch ON ch.account_id = c.account_id AND ch.seq = c.delivered_seq + 1
		WHERE $1 = 0 OR w.user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: webhook states: %w", err)
	}
	defer rows.Close()
	out := map[int64]WebhookState{}
	for rows.Next() {
		var (
			id, delivered, head, now int64
			oldest, failing          sql.NullInt64
			lastErr                  string
		)
		if err := rows.Scan(&id, &delivered, &head, &oldest, &failing, &lastErr, &now); err != nil {
			return nil, fmt.Errorf("store: webhook states: %w", err)
		}
		st := out[id]
		st.WebhookID, st.Now = id, fromMillis(now)
		st.Behind += max(head-delivered, 0)
		if o := fromNullMillis(oldest); !o.IsZero() && (st.OldestUndelivered.IsZero() || o.Before(st.OldestUndelivered)) {
			st.OldestUndelivered = o
		}
		if f := fromNullMillis(failing); !f.IsZero() && (st.FailingSince.IsZero() || f.Before(st.FailingSince)) {
			st.FailingSince, st.LastError = f, lastErr
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: webhook states: %w", err)
	}
	return out, nil
}
