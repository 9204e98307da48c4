package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Token is an API token of a user. Only the hash of the token is stored: the token itself is
// shown once, when it is made, and a stolen database does not hand out working credentials.
type Token struct {
	ID         int64
	UserID     int64
	Name       string
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
}

// CreateToken stores the hash of a new token of the user.
func (s *Store) CreateToken(ctx context.Context, userID int64, tokenHash, name string) (Token, error) {
	var (
		t       Token
		created int64
	)
	err := s.write.QueryRowContext(ctx, `
		INSERT INTO api_tokens (user_id, token_hash, name, created_at) VALUES ($1, $2, $3, {{now}})
		RETURNING id, user_id, name, created_at`, userID, tokenHash, name).Scan(&t.ID, &t.UserID, &t.Name, &created)
	if s.dialect.isUniqueViolation(err) {
		return Token{}, fmt.Errorf("store: create token: %w", ErrConflict)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: create token for user %d: %w", userID, err)
	}
	t.CreatedAt = fromMillis(created)
	return t, nil
}

// tokenTouchInterval bounds how often a token's last_used_at is written: recording every request
// would turn every read of the API into a write.
const tokenTouchInterval = time.Minute

// UserByToken returns the user owning the token with this hash, ErrNotFound when there is none.
// It records the use at most once per minute.
func (s *Store) UserByToken(ctx context.Context, tokenHash string) (User, error) {
	var (
		u        User
		created  int64
		tokenID  int64
		lastUsed sql.NullInt64
		now      int64
	)
	row, err := s.queryRowPrepared(ctx, `
		SELECT u.id, u.email, u.password_hash, u.is_admin, u.created_at, t.id, t.last_used_at, {{now}}
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1`, tokenHash)
	if err == nil {
		err = row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.IsAdmin, &created, &tokenID, &lastUsed, &now)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: token: %w", err)
	}
	u.CreatedAt = fromMillis(created)
	if !lastUsed.Valid || now-lastUsed.Int64 >= tokenTouchInterval.Milliseconds() {
		if _, err := s.write.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = $2 WHERE id = $1`, tokenID, now); err != nil {
			return User{}, fmt.Errorf("store: token: record use: %w", err)
		}
	}
	return u, nil
}

// Tokens lists a user's tokens (every user's when userID is 0), oldest first.
func (s *Store) Tokens(ctx context.Context, userID int64) ([]Token, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, user_id, name, created_at, last_used_at
		FROM api_tokens WHERE $1 = 0 OR user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: tokens of user %d: %w", userID, err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var (
			t        Token
			created  int64
			lastUsed sql.NullInt64
		)
		if err := rows.Scan(&t.ID, &t.UserID, &t.Name, &created, &lastUsed); err != nil {
			return nil, fmt.Errorf("store: tokens of user %d: %w", userID, err)
		}
		t.CreatedAt, t.LastUsedAt = fromMillis(created), fromNullMillis(lastUsed)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: tokens of user %d: %w", userID, err)
	}
	return out, nil
}

// DeleteToken removes one of the user's tokens (any user's when userID is 0); ErrNotFound if
// there is no such token.
func (s *Store) DeleteToken(ctx context.Context, userID, tokenID int64) error {
	_, err := s.RevokeToken(ctx, userID, tokenID)
	return err
}

// RevokeToken is DeleteToken returning the token's hash, so that a cache of token lookups can
// forget it at once.
func (s *Store) RevokeToken(ctx context.Context, userID, tokenID int64) (hash string, err error) {
	err = s.write.QueryRowContext(ctx, `DELETE FROM api_tokens WHERE id = $1 AND ($2 = 0 OR user_id = $2)
		RETURNING token_hash`, tokenID, userID).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: delete token %d: %w", tokenID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("store: delete token %d: %w", tokenID, err)
	}
	return hash, nil
}
