package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The refresh of an OAuth2 account's token is a fenced, single-writer operation on its row (see
// migration 00012): ClaimTokenRefresh takes the lease with a compare-and-set on the token version
// the caller read, StoreRefreshedToken stores the new token set and ends the lease in the same
// statement, and whoever loses the claim waits for the version to move and reads the winner's
// token. Two workers or instances therefore never spend the same refresh token twice, which with
// a rotating provider would turn the second refresh into an invalid_grant.

// ClaimTokenRefresh takes the refresh lease of an OAuth2 account for owner, for lease, if the
// account's token is still at version and nobody else holds an unexpired lease. It reports
// whether the caller won; a loser re-reads the account until its version moves.
func (s *Store) ClaimTokenRefresh(ctx context.Context, id, version int64, owner string, lease time.Duration) (bool, error) {
	res, err := s.write.ExecContext(ctx, `
		UPDATE accounts SET refresh_owner = $3, refresh_lease_until = {{now}} + $4
		WHERE id = $1 AND auth_kind = 'oauth2' AND auth_state = 'ok' AND token_version = $2
		  AND (refresh_lease_until <= {{now}} OR refresh_owner = $3)`, id, version, owner, millis(lease))
	if err != nil {
		return false, fmt.Errorf("store: claim token refresh of account %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: claim token refresh of account %d: %w", id, err)
	}
	return n == 1, nil
}

// StoreRefreshedToken stores the token set a refresh returned (the rotated refresh token with the
// new access token, sealed together) and its expiry, bumps the token version and ends owner's
// lease, in one statement. ErrConflict: owner no longer held the lease at version (it expired and
// another refresher took over), and nothing was written.
func (s *Store) StoreRefreshedToken(ctx context.Context, id, version int64, owner string, sealed []byte, expiry time.Time) error {
	res, err := s.write.ExecContext(ctx, `
		UPDATE accounts SET secret_enc = $4, token_expires_at = $5, token_version = token_version + 1,
			refresh_owner = '', refresh_lease_until = 0
		WHERE id = $1 AND token_version = $2 AND refresh_owner = $3`, id, version, owner, sealed, expiryMillis(expiry))
	if err != nil {
		return fmt.Errorf("store: store refreshed token of account %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("store: store refreshed token of account %d: lease lost: %w", id, ErrConflict)
	}
	return nil
}

// ReleaseTokenRefresh ends owner's lease without storing anything (the refresh failed for a
// transient reason): the next refresher need not wait for the lease to expire.
func (s *Store) ReleaseTokenRefresh(ctx context.Context, id int64, owner string) error {
	if _, err := s.write.ExecContext(ctx, `
		UPDATE accounts SET refresh_owner = '', refresh_lease_until = 0 WHERE id = $1 AND refresh_owner = $2`,
		id, owner); err != nil {
		return fmt.Errorf("store: release token refresh of account %d: %w", id, err)
	}
	return nil
}

// MarkReauthRequired puts an OAuth2 account whose token is still at version in the
// reauth_required state with reason as its last error, and ends any refresh lease. It reports
// whether this call made the change (false: already marked, or a newer token was stored since).
func (s *Store) MarkReauthRequired(ctx context.Context, id, version int64, reason string) (bool, error) {
	res, err := s.write.ExecContext(ctx, `
		UPDATE accounts SET auth_state = 'reauth_required', last_error = $3, refresh_owner = '', refresh_lease_until = 0
		WHERE id = $1 AND auth_kind = 'oauth2' AND token_version = $2 AND auth_state = 'ok'`, id, version, reason)
	if err != nil {
		return false, fmt.Errorf("store: mark account %d reauth_required: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ReplaceOAuthToken stores the token set of a new sign-in (login is the mailbox address it is
// for, provider its provider) and puts the account back in the ok state: "Sign in again". The
// version moves, so a refresher still holding the old token cannot store over it.
func (s *Store) ReplaceOAuthToken(ctx context.Context, id int64, provider, login string, sealed []byte, expiry time.Time) (Account, error) {
	a, err := scanAccount(s.write.QueryRowContext(ctx, `
		UPDATE accounts SET auth_kind = 'oauth2', oauth_provider = $2, login = $3, secret_enc = $4, token_expires_at = $5,
			token_version = token_version + 1, refresh_owner = '', refresh_lease_until = 0,
			auth_state = 'ok', last_error = ''
		WHERE id = $1
		RETURNING `+accountColumns, id, provider, login, sealed, expiryMillis(expiry)))
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: replace token of account %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: replace token of account %d: %w", id, err)
	}
	return a, nil
}

// ReauthRequired counts the accounts waiting for their owner to sign in again (all users' when
// userID is 0).
func (s *Store) ReauthRequired(ctx context.Context, userID int64) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM accounts
		WHERE auth_state = 'reauth_required' AND ($1 = 0 OR user_id = $1)`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count reauth_required accounts: %w", err)
	}
	return n, nil
}

func expiryMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// OAuthFlow is a web sign-in under way: what the callback needs to finish it.
type OAuthFlow struct {
	State     string
	SessionID string
	UserID    int64
	Provider  string
	// AccountID is the account signing in again, 0 for a new one; Name the new one's name.
	AccountID   int64
	Name        string
	LoginHint   string
	VerifierEnc []byte
	RedirectURI string
	Expires     time.Time
}

// CreateOAuthFlow stores a sign-in under way, and forgets those that expired.
func (s *Store) CreateOAuthFlow(ctx context.Context, f OAuthFlow) error {
	var account sql.NullInt64
	if f.AccountID != 0 {
		account = sql.NullInt64{Int64: f.AccountID, Valid: true}
	}
	return s.inTx(ctx, func(tx txn) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_flows WHERE expires_at <= {{now}}`); err != nil {
			return fmt.Errorf("store: create oauth flow: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO oauth_flows (state, session_id, user_id, provider, account_id, name, login_hint, verifier_enc, redirect_uri, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			f.State, f.SessionID, f.UserID, f.Provider, account, f.Name, f.LoginHint, f.VerifierEnc, f.RedirectURI, f.Expires.UnixMilli()); err != nil {
			return fmt.Errorf("store: create oauth flow: %w", err)
		}
		return nil
	})
}

// TakeOAuthFlow returns the unexpired sign-in of state and deletes it, so that a state is used
// once whatever happens next. ErrNotFound: unknown, expired or already taken.
func (s *Store) TakeOAuthFlow(ctx context.Context, state string) (OAuthFlow, error) {
	var (
		f       OAuthFlow
		account sql.NullInt64
		expires int64
		live    bool
	)
	err := s.write.QueryRowContext(ctx, `
		DELETE FROM oauth_flows WHERE state = $1
		RETURNING state, session_id, user_id, provider, account_id, name, login_hint, verifier_enc, redirect_uri, expires_at,
			expires_at > {{now}}`, state).
		Scan(&f.State, &f.SessionID, &f.UserID, &f.Provider, &account, &f.Name, &f.LoginHint, &f.VerifierEnc, &f.RedirectURI, &expires, &live)
	if errors.Is(err, sql.ErrNoRows) {
		return OAuthFlow{}, fmt.Errorf("store: oauth flow: %w", ErrNotFound)
	}
	if err != nil {
		return OAuthFlow{}, fmt.Errorf("store: oauth flow: %w", err)
	}
	if !live {
		return OAuthFlow{}, fmt.Errorf("store: oauth flow: expired: %w", ErrNotFound)
	}
	f.AccountID, f.Expires = account.Int64, fromMillis(expires)
	return f, nil
}
