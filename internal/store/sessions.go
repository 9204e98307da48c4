package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CreateSession records a web session of the user, valid until expires. id is the random id the
// signed cookie names; a cookie is honoured only while its row exists. Expired rows of every user
// are removed on the way, so the table holds only live sessions and those of the last moments.
func (s *Store) CreateSession(ctx context.Context, id string, userID int64, expires time.Time) error {
	return s.inTx(ctx, func(tx txn) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= {{now}}`); err != nil {
			return fmt.Errorf("store: purge expired sessions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, created_at, expires_at)
			VALUES ($1, $2, {{now}}, $3)`, id, userID, expires.UnixMilli()); err != nil {
			return fmt.Errorf("store: create session of user %d: %w", userID, err)
		}
		return nil
	})
}

// UserBySession returns the user of a live session: its row exists and has not expired by the
// database clock. ErrNotFound otherwise.
func (s *Store) UserBySession(ctx context.Context, id string) (User, error) {
	row, err := s.queryRowPrepared(ctx, `
		SELECT u.id, u.email, u.password_hash, u.is_admin, u.created_at
		FROM sessions x JOIN users u ON u.id = x.user_id WHERE x.id = $1 AND x.expires_at > {{now}}`, id)
	var u User
	if err == nil {
		u, err = scanUser(row)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: session: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: session: %w", err)
	}
	return u, nil
}

// DeleteSession ends one session (logout). Ending a session that is already gone is not an error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// Revoked counts what a revocation ended.
type Revoked struct {
	Sessions int64
	Tokens   int64
}

// RevokeUser ends every session and deletes every API token of the user, in one transaction.
// ErrNotFound if there is no such user.
func (s *Store) RevokeUser(ctx context.Context, userID int64) (Revoked, error) {
	var r Revoked
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		r, err = revokeUser(ctx, tx, userID)
		return err
	})
	return r, err
}

// SetPassword replaces the user's password hash and, in the same transaction, ends every session
// and deletes every API token of the user: whoever knew the old password may have made them.
// ErrNotFound if there is no such user.
func (s *Store) SetPassword(ctx context.Context, userID int64, passwordHash string) (Revoked, error) {
	var r Revoked
	err := s.inTx(ctx, func(tx txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, userID, passwordHash)
		if err != nil {
			return fmt.Errorf("store: set password of user %d: %w", userID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: set password of user %d: %w", userID, ErrNotFound)
		}
		r, err = revokeUser(ctx, tx, userID)
		return err
	})
	return r, err
}

func revokeUser(ctx context.Context, tx txn, userID int64) (Revoked, error) {
	var exists int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&exists); errors.Is(err, sql.ErrNoRows) {
		return Revoked{}, fmt.Errorf("store: user %d: %w", userID, ErrNotFound)
	} else if err != nil {
		return Revoked{}, fmt.Errorf("store: user %d: %w", userID, err)
	}
	var r Revoked
	res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID)
	if err != nil {
		return Revoked{}, fmt.Errorf("store: end sessions of user %d: %w", userID, err)
	}
	r.Sessions, _ = res.RowsAffected()
	res, err = tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE user_id = $1`, userID)
	if err != nil {
		return Revoked{}, fmt.Errorf("store: delete tokens of user %d: %w", userID, err)
	}
	r.Tokens, _ = res.RowsAffected()
	return r, nil
}
