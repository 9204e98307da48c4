package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SMTP is where an account submits mail (migration 00013). Submission signs in as the account
// does on IMAP: the same login with the same password or OAuth2 token.
type SMTP struct {
	Host    string
	Port    int
	TLSMode string // none, starttls, tls
	// SavesSent: the server files submitted mail in Sent itself (Gmail does), so mailsync
	// appends no copy.
	SavesSent bool
	// Restricted: a non-admin user chose this server, so the operator's destination policy applies
	// to it (as Account.Restricted does to the IMAP server).
	Restricted bool
}

// AccountSMTP returns the account's SMTP settings; ErrNotFound when it has none.
func (s *Store) AccountSMTP(ctx context.Context, accountID int64) (SMTP, error) {
	var c SMTP
	err := s.read.QueryRowContext(ctx, `SELECT host, port, tls_mode, saves_sent, restricted FROM account_smtp WHERE account_id = $1`,
		accountID).Scan(&c.Host, &c.Port, &c.TLSMode, &c.SavesSent, &c.Restricted)
	if errors.Is(err, sql.ErrNoRows) {
		return SMTP{}, fmt.Errorf("store: smtp of account %d: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return SMTP{}, fmt.Errorf("store: smtp of account %d: %w", accountID, err)
	}
	return c, nil
}

// SetAccountSMTP stores the account's SMTP settings, replacing any; a zero Host removes them.
func (s *Store) SetAccountSMTP(ctx context.Context, accountID int64, c SMTP) error {
	var err error
	if c.Host == "" {
		_, err = s.write.ExecContext(ctx, `DELETE FROM account_smtp WHERE account_id = $1`, accountID)
	} else {
		_, err = s.write.ExecContext(ctx, `
			INSERT INTO account_smtp (account_id, host, port, tls_mode, saves_sent, restricted) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (account_id) DO UPDATE SET host = excluded.host, port = excluded.port,
				tls_mode = excluded.tls_mode, saves_sent = excluded.saves_sent, restricted = excluded.restricted`,
			accountID, c.Host, c.Port, c.TLSMode, c.SavesSent, c.Restricted)
	}
	if err != nil {
		return fmt.Errorf("store: smtp of account %d: %w", accountID, s.busy(err))
	}
	return nil
}
