package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is someone who logs in to mailsync. PasswordHash is an argon2id PHC string; the store
// never sees a password.
type User struct {
	ID           int64
	Email        string
	PasswordHash string
	IsAdmin      bool
	CreatedAt    time.Time
}

const userColumns = `id, email, password_hash, is_admin, created_at`

func scanUser(row rowScanner) (User, error) {
	var (
		u       User
		created int64
	)
	if err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.IsAdmin, &created); err != nil {
		return User{}, err
	}
	u.CreatedAt = fromMillis(created)
	return u, nil
}

// CreateUser adds a user; ErrConflict if the email is taken.
func (s *Store) CreateUser(ctx context.Context, email, passwordHash string, isAdmin bool) (User, error) {
	u, err := scanUser(s.write.QueryRowContext(ctx, `
		INSERT INTO users (email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, {{now}})
		RETURNING `+userColumns, email, passwordHash, isAdmin))
	if s.dialect.isUniqueViolation(err) {
		return User{}, fmt.Errorf("store: create user %s: %w", email, ErrConflict)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: create user %s: %w", email, err)
	}
	return u, nil
}

// UserByEmail finds a user by email.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: user %s: %w", email, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: user %s: %w", email, err)
	}
	return u, nil
}

// UserByID finds a user by id.
func (s *Store) UserByID(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: user %d: %w", id, err)
	}
	return u, nil
}

// Users lists every user, by id.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	return out, nil
}

// DeleteUser removes a user with everything that is theirs: sessions, tokens, accounts and,
// through the accounts, their folders, messages and tasks (ON DELETE CASCADE). A worker still
// syncing one of the accounts loses its lease at its next write. ErrNotFound if there is no such
// user.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete user %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete user %d: %w", id, ErrNotFound)
	}
	return nil
}
