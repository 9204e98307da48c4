package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Account is one IMAP mailbox of a user. SecretEnc is the IMAP password sealed under the server
// key (package secret); the store never holds it in the clear.
type Account struct {
	ID            int64
	UserID        int64
	Name          string
	IMAPHost      string
	IMAPPort      int
	TLSMode       string // none, starttls, tls
	TLSSkipVerify bool
	Login         string
	SecretEnc     []byte
	SyncInterval  time.Duration // 0: no scheduled sync
	CreatedAt     time.Time
	LastError     string
	// Restricted says the destination policy applies: the account was created, or last pointed at
	// a new host or port, by a non-admin user through the API. The operator's own accounts (the
	// CLI, administrators) may point anywhere, a LAN or loopback server included.
	Restricted bool

	// AuthKind is AuthPassword (SecretEnc is the IMAP password) or AuthOAuth2 (SecretEnc is the
	// sealed token set, Login the mailbox address the token is for, OAuthProvider the provider
	// configuration it came from). An OAuth2 account's SecretEnc changes only through the token
	// methods (StoreRefreshedToken, ReplaceOAuthToken), never UpdateAccount: a rewrite from an
	// older read would put back a refresh token the provider has rotated away.
	AuthKind      string
	OAuthProvider string
	// TokenExpiry is when the stored access token expires (zero: unknown); TokenVersion counts
	// the token sets stored, the fence of a refresh.
	TokenExpiry  time.Time
	TokenVersion int64
	// AuthState is AuthOK or AuthReauthRequired: the provider refused the refresh token, and
	// nothing syncs the account until its owner signs in again.
	AuthState string
}

// Authentication kinds and states of an account.
const (
	AuthPassword       = "password"
	AuthOAuth2         = "oauth2"
	AuthOK             = "ok"
	AuthReauthRequired = "reauth_required"
)

// IsOAuth2 reports whether the account signs in with an OAuth2 token.
func (a Account) IsOAuth2() bool { return a.AuthKind == AuthOAuth2 }

// ReauthRequired reports whether the account waits for its owner to sign in again.
func (a Account) ReauthRequired() bool { return a.AuthState == AuthReauthRequired }

const accountColumns = `id, user_id, name, imap_host, imap_port, tls_mode, tls_skip_verify, login,
	secret_enc, sync_interval_s, created_at, last_error, restricted, auth_kind, oauth_provider,
	token_expires_at, token_version, auth_state`

func scanAccount(row rowScanner) (Account, error) {
	var (
		a                  Account
		intervalS, created int64
		expires            int64
	)
	if err := row.Scan(&a.ID, &a.UserID, &a.Name, &a.IMAPHost, &a.IMAPPort, &a.TLSMode, &a.TLSSkipVerify,
		&a.Login, &a.SecretEnc, &intervalS, &created, &a.LastError, &a.Restricted, &a.AuthKind, &a.OAuthProvider,
		&expires, &a.TokenVersion, &a.AuthState); err != nil {
		return Account{}, err
	}
	if expires != 0 {
		a.TokenExpiry = fromMillis(expires)
	}
	a.SyncInterval = time.Duration(intervalS) * time.Second
	a.CreatedAt = fromMillis(created)
	return a, nil
}

// CreateAccount adds an account; ErrConflict if the user already has one with that name. Its
// creation time is a.CreatedAt when set (tests with a hand-moved clock), else the database clock.
func (s *Store) CreateAccount(ctx context.Context, a Account) (Account, error) {
	if a.AuthKind == "" {
		a.AuthKind = AuthPassword
	}
	var expires int64
	if !a.TokenExpiry.IsZero() {
		expires = a.TokenExpiry.UnixMilli()
	}
	out, err := scanAccount(s.write.QueryRowContext(ctx, `
		INSERT INTO accounts (user_id, name, imap_host, imap_port, tls_mode, tls_skip_verify, login,
			secret_enc, sync_interval_s, created_at, restricted, auth_kind, oauth_provider, token_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, {{now}}), $11, $12, $13, $14)
		RETURNING `+accountColumns,
		a.UserID, a.Name, a.IMAPHost, a.IMAPPort, a.TLSMode, a.TLSSkipVerify, a.Login, a.SecretEnc,
		int64(a.SyncInterval/time.Second), at(a.CreatedAt), a.Restricted, a.AuthKind, a.OAuthProvider, expires))
	if s.dialect.isUniqueViolation(err) {
		return Account{}, fmt.Errorf("store: create account %q: %w", a.Name, ErrConflict)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: create account %q: %w", a.Name, err)
	}
	return out, nil
}

// Account returns one account by id.
func (s *Store) Account(ctx context.Context, id int64) (Account, error) {
	row, err := s.queryRowPrepared(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id)
	var a Account
	if err == nil {
		a, err = scanAccount(row)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account %d: %w", id, err)
	}
	return a, nil
}

// Accounts lists a user's accounts (every account when userID is 0), by id.
func (s *Store) Accounts(ctx context.Context, userID int64) ([]Account, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts
		WHERE $1 = 0 OR user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("store: accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: accounts: %w", err)
	}
	return out, nil
}

// UpdateAccount rewrites the editable fields of an account (everything but its owner and creation
// time); ErrNotFound if it is gone, ErrConflict if the new name is taken. An OAuth2 account's
// sealed token set and authentication state are left as they are (see Account.AuthKind).
func (s *Store) UpdateAccount(ctx context.Context, a Account) (Account, error) {
	out, err := scanAccount(s.write.QueryRowContext(ctx, `
		UPDATE accounts SET name = $2, imap_host = $3, imap_port = $4, tls_mode = $5, tls_skip_verify = $6,
			login = $7, secret_enc = CASE WHEN auth_kind = 'oauth2' THEN secret_enc ELSE $8 END, sync_interval_s = $9, last_error = $10, restricted = $11
		WHERE id = $1
		RETURNING `+accountColumns,
		a.ID, a.Name, a.IMAPHost, a.IMAPPort, a.TLSMode, a.TLSSkipVerify, a.Login, a.SecretEnc,
		int64(a.SyncInterval/time.Second), a.LastError, a.Restricted))
	if s.dialect.isUniqueViolation(err) {
		return Account{}, fmt.Errorf("store: update account %d: %w", a.ID, ErrConflict)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: update account %d: %w", a.ID, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: update account %d: %w", a.ID, err)
	}
	return out, nil
}

// DeleteAccount removes an account with everything stored for it: folders, messages and tasks go
// with it (ON DELETE CASCADE). A worker still syncing it loses its lease at its next write.
func (s *Store) DeleteAccount(ctx context.Context, id int64) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM accounts WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete account %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete account %d: %w", id, ErrNotFound)
	}
	return nil
}

// SealedSecrets counts the values sealed under the server key (the accounts' IMAP passwords and
// the webhooks' signing secrets): a server must not replace a lost key while any exist, for they
// would never open again.
func (s *Store) SealedSecrets(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM webhooks)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count sealed secrets: %w", err)
	}
	return n, nil
}
