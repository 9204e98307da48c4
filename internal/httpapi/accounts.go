package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/secret"
	"mailsync/internal/smtpsend"
	"mailsync/internal/store"
)

// ownAccount returns the signed-in user's account id; another user's answers 404 like a missing one.
func (s *Server) ownAccount(ctx context.Context, id int64) (store.Account, error) {
	a, err := s.store.Account(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.UserID != userFrom(ctx).ID) {
		return store.Account{}, huma.Error404NotFound(fmt.Sprintf("account %d not found", id))
	}
	return a, err
}

func (s *Server) lastTask(ctx context.Context, accountID int64) (*TaskJSON, error) {
	t, err := s.tasks.Latest(ctx, accountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	j := s.taskJSON(t)
	return &j, nil
}

type accountBody struct {
	Name          string    `json:"name" minLength:"1" maxLength:"200"`
	IMAPHost      string    `json:"imap_host" minLength:"1" maxLength:"253"`
	IMAPPort      int       `json:"imap_port" minimum:"1" maximum:"65535"`
	TLSMode       string    `json:"tls_mode" enum:"none,starttls,tls"`
	TLSSkipVerify bool      `json:"tls_skip_verify,omitempty"`
	Login         string    `json:"login" minLength:"1" maxLength:"320"`
	Password      string    `json:"password" minLength:"1" maxLength:"1024" writeOnly:"true" doc:"Tested against the server, then stored sealed; never shown again."`
	SyncIntervalS int64     `json:"sync_interval_s,omitempty" minimum:"0" maximum:"2592000" doc:"Seconds between scheduled syncs; 0: none."`
	SMTP          *SMTPJSON `json:"smtp,omitempty" doc:"Where the account sends mail, tested with its login before anything is saved. Left out: the IMAP host's usual submission server (smtp.HOST:587, STARTTLS) is tried and kept only if its login works."`
}

type accountInput struct {
	Body accountBody
}

type accountOutput struct {
	Status int
	Body   AccountJSON
}

func (s *Server) createAccount(ctx context.Context, in *accountInput) (*accountOutput, error) {
	b := in.Body
	a := store.Account{UserID: userFrom(ctx).ID, Name: strings.TrimSpace(b.Name), IMAPHost: strings.TrimSpace(b.IMAPHost),
		IMAPPort: b.IMAPPort, TLSMode: b.TLSMode, TLSSkipVerify: b.TLSSkipVerify, Login: b.Login,
		SyncInterval: time.Duration(b.SyncIntervalS) * time.Second,
		// The destination policy applies to what a non-admin user points an account at.
		Restricted: !userFrom(ctx).IsAdmin}
	if err := s.checkLogin(ctx, a, b.Password); err != nil {
		return nil, err
	}
	a.SecretEnc = s.cfg.Box.Seal([]byte(b.Password), secret.AccountContext(a.Login, a.IMAPHost))
	smtp, err := s.newAccountSMTP(ctx, a, b.SMTP)
	if err != nil {
		return nil, err
	}
	out, err := s.store.CreateAccount(ctx, a)
	if errors.Is(err, store.ErrConflict) {
		return nil, huma.Error409Conflict(fmt.Sprintf("you already have an account named %q", a.Name))
	}
	if err != nil {
		return nil, err
	}
	if smtp.Host != "" {
		if err := s.store.SetAccountSMTP(ctx, out.ID, smtp); err != nil {
			return nil, err
		}
	}
	s.log.Info("httpapi: account added", "account", out.ID, "user", out.UserID, "host", out.IMAPHost, "smtp", smtp.Host)
	return &accountOutput{Status: 201, Body: accountJSON(out, nil)}, nil
}

// newAccountSMTP is where a new account sends mail: the settings given, tested (a failure saves
// nothing), or the IMAP host's usual submission server, kept only when its login works within a
// few seconds (none otherwise: the account syncs, and sends once PUT /api/accounts/{id}/smtp
// gives it a server).
func (s *Server) newAccountSMTP(ctx context.Context, a store.Account, given *SMTPJSON) (store.SMTP, error) {
	restricted := !userFrom(ctx).IsAdmin
	if given != nil {
		c := store.SMTP{Host: strings.TrimSpace(given.Host), Port: given.Port, TLSMode: given.TLSMode, SavesSent: given.SavesSent, Restricted: restricted}
		if s.cfg.SMTPCheck != nil {
			if err := s.cfg.SMTPCheck.CheckSMTP(ctx, a, c); err != nil {
				return store.SMTP{}, huma.Error422UnprocessableEntity(fmt.Sprintf("the SMTP server %s:%d did not accept the account's login: %v", c.Host, c.Port, err))
			}
		}
		return c, nil
	}
	if s.cfg.SMTPCheck == nil {
		return store.SMTP{}, nil
	}
	host, port, tls, savesSent := smtpsend.Guess(a.IMAPHost)
	c := store.SMTP{Host: host, Port: port, TLSMode: string(tls), SavesSent: savesSent, Restricted: restricted}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cfg.SMTPCheck.CheckSMTP(gctx, a, c); err != nil {
		s.log.Debug("httpapi: no SMTP server found for a new account", "host", host, "port", port, "err", err)
		return store.SMTP{}, nil
	}
	return c, nil
}

// checkLogin tests the credentials against the IMAP server. Its error message never contains
// the password, even if the server or the client library echoes it. A user who is not an
// administrator is not told what a connect, TLS or greeting failure looked like (a banner, a
// certificate name, a port's state describe the server's network): that goes to the log.
func (s *Server) checkLogin(ctx context.Context, a store.Account, password string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := s.cfg.Login.CheckLogin(ctx, a, password)
	if err == nil {
		return nil
	}
	// What an IMAP error may show a stranger to the network (imapconn.Error.Public).
	var pub interface {
		error
		Public() error
	}
	if u := userFrom(ctx); !u.IsAdmin && errors.As(err, &pub) {
		if p := pub.Public(); p != error(pub) {
			s.log.Warn("httpapi: a user's IMAP server could not be used", "user", u.ID, "host", a.IMAPHost, "port", a.IMAPPort,
				"err", secret.Redact(err.Error(), password))
			return huma.Error422UnprocessableEntity(fmt.Sprintf("cannot use the IMAP server %s:%d: %s", a.IMAPHost, a.IMAPPort,
				secret.Redact(p.Error(), password)))
		}
	}
	msg := secret.Redact(err.Error(), password)
	return huma.Error422UnprocessableEntity(fmt.Sprintf("the IMAP server %s:%d refused the login of %q: %s", a.IMAPHost, a.IMAPPort, a.Login, msg))
}

type accountsOutput struct {
	Body []AccountJSON
}

func (s *Server) listAccounts(ctx context.Context, _ *struct{}) (*accountsOutput, error) {
	accts, err := s.store.Accounts(ctx, userFrom(ctx).ID)
	if err != nil {
		return nil, err
	}
	out := make([]AccountJSON, 0, len(accts))
	for _, a := range accts {
		last, err := s.lastTask(ctx, a.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, accountJSON(a, last))
	}
	return &accountsOutput{Body: out}, nil
}

type accountIDInput struct {
	ID int64 `path:"id" minimum:"1" doc:"The account's id."`
}

func (s *Server) getAccount(ctx context.Context, in *accountIDInput) (*accountOutput, error) {
	a, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	last, err := s.lastTask(ctx, a.ID)
	if err != nil {
		return nil, err
	}
	return &accountOutput{Status: 200, Body: accountJSON(a, last)}, nil
}

type accountPatchInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body struct {
		Name          *string `json:"name,omitempty" minLength:"1" maxLength:"200"`
		IMAPHost      *string `json:"imap_host,omitempty" minLength:"1" maxLength:"253"`
		IMAPPort      *int    `json:"imap_port,omitempty" minimum:"1" maximum:"65535"`
		TLSMode       *string `json:"tls_mode,omitempty" enum:"none,starttls,tls"`
		TLSSkipVerify *bool   `json:"tls_skip_verify,omitempty"`
		Login         *string `json:"login,omitempty" minLength:"1" maxLength:"320"`
		Password      *string `json:"password,omitempty" minLength:"1" maxLength:"1024" writeOnly:"true"`
		SyncIntervalS *int64  `json:"sync_interval_s,omitempty" minimum:"0" maximum:"2592000"`
	}
}

// patchAccount changes the fields present. A change of server, login or password is tested
// against the IMAP server first, and the password is sealed again for the new login and host.
// A change of destination (host, port, TLS mode, certificate check) must bring the password.
func (s *Server) patchAccount(ctx context.Context, in *accountPatchInput) (*accountOutput, error) {
	a, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	b := in.Body
	if a.IsOAuth2() && (b.IMAPHost != nil || b.IMAPPort != nil || b.TLSMode != nil || b.TLSSkipVerify != nil || b.Login != nil || b.Password != nil) {
		return nil, huma.Error422UnprocessableEntity("an OAuth2 account's server and address come from its provider and its sign-in: " +
			"only its name and sync interval can change (sign in again to change the mailbox)")
	}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	before := a
	set(&a.Name, b.Name)
	set(&a.IMAPHost, b.IMAPHost)
	set(&a.TLSMode, b.TLSMode)
	if b.Login != nil {
		a.Login = *b.Login
	}
	if b.IMAPPort != nil {
		a.IMAPPort = *b.IMAPPort
	}
	if b.TLSSkipVerify != nil {
		a.TLSSkipVerify = *b.TLSSkipVerify
	}
	if b.SyncIntervalS != nil {
		a.SyncInterval = time.Duration(*b.SyncIntervalS) * time.Second
	}
	// The stored password may go only where it went before: a new host, port, TLS mode or
	// certificate check could hand it to someone else's server, or send it in clear.
	destChanged := a.IMAPHost != before.IMAPHost || a.IMAPPort != before.IMAPPort || a.TLSMode != before.TLSMode ||
		a.TLSSkipVerify != before.TLSSkipVerify
	if destChanged && b.Password == nil {
		return nil, huma.Error422UnprocessableEntity("a new server, port, TLS mode or certificate check needs the password again: " +
			"send \"password\" with this change (the stored one is never sent to a new destination)")
	}
	if a.IMAPHost != before.IMAPHost || a.IMAPPort != before.IMAPPort {
		// Who points an account at a server decides whether the destination policy applies.
		a.Restricted = !userFrom(ctx).IsAdmin
	}
	if destChanged || a.Login != before.Login || b.Password != nil {
		var password string
		if b.Password != nil {
			password = *b.Password
		} else {
			// Only the login changed: the stored password goes to the same server as before.
			plain, err := s.cfg.Box.Open(before.SecretEnc, secret.AccountContext(before.Login, before.IMAPHost))
			if err != nil {
				return nil, huma.Error422UnprocessableEntity("the stored password cannot be opened (was the server key changed?); send the password with this change")
			}
			password = string(plain)
		}
		if err := s.checkLogin(ctx, a, password); err != nil {
			return nil, err
		}
		a.SecretEnc = s.cfg.Box.Seal([]byte(password), secret.AccountContext(a.Login, a.IMAPHost))
		a.LastError = ""
	}
	out, err := s.store.UpdateAccount(ctx, a)
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, huma.Error409Conflict(fmt.Sprintf("you already have an account named %q", a.Name))
	case errors.Is(err, store.ErrNotFound):
		return nil, huma.Error404NotFound(fmt.Sprintf("account %d not found", in.ID))
	case err != nil:
		return nil, err
	}
	last, err := s.lastTask(ctx, a.ID)
	if err != nil {
		return nil, err
	}
	return &accountOutput{Status: 200, Body: accountJSON(out, last)}, nil
}

func (s *Server) deleteAccount(ctx context.Context, in *accountIDInput) (*struct{}, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	err := s.store.DeleteAccount(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("account %d not found", in.ID))
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("httpapi: account deleted with its data", "account", in.ID, "user", userFrom(ctx).ID)
	return nil, nil
}
