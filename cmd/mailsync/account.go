package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"mailsync/internal/secret"
	"mailsync/internal/smtpsend"
	"mailsync/internal/store"
)

// AccountCmd manages IMAP accounts.
type AccountCmd struct {
	Add    AccountAddCmd    `cmd:"" help:"Add an IMAP account (the login is tested before anything is saved); --oauth signs in with a provider instead of a password."`
	Reauth AccountReauthCmd `cmd:"" help:"Sign an OAuth2 account in again (after its provider refused its authorization) and resume its syncs."`
	Edit   AccountEditCmd   `cmd:"" help:"Change an account. A new server, port, TLS mode or certificate check needs the password again."`
	List   AccountListCmd   `cmd:"" help:"List accounts."`
}

// AccountAddCmd adds an account. The password comes from stdin or MAILSYNC_IMAP_PASSWORD, never
// from the command line, where other users of the machine could read it.
type AccountAddCmd struct {
	User          string        `required:"" help:"Email of the mailsync user who owns the account."`
	Name          string        `required:"" help:"A name for the account."`
	IMAPURL       string        `name:"imap-url" placeholder:"imap[s]://LOGIN@HOST[:PORT]" help:"Where and as whom to log in (required without --oauth)."`
	TLS           string        `name:"tls" enum:",none,starttls,tls" default:"" help:"none, starttls or tls (default: tls for imaps://, starttls for imap://)."`
	TLSSkipVerify bool          `name:"tls-skip-verify" help:"Accept any server certificate (self-signed test servers only)."`
	PasswordStdin bool          `name:"password-stdin" help:"Read the IMAP password from the first line of stdin (else MAILSYNC_IMAP_PASSWORD)."`
	SyncInterval  time.Duration `name:"sync-interval" default:"0s" help:"Sync on a schedule this often (0: only when asked)."`
	SMTPURL       string        `name:"smtp-url" placeholder:"smtp[s]://HOST[:PORT]" help:"Where the account sends mail (smtp:// STARTTLS on 587, smtps:// TLS on 465, smtp+plain:// no TLS); tested before anything is saved. Default: the IMAP host's usual submission server, kept only if its login works."`
	SMTPSavesSent *bool         `name:"smtp-saves-sent" help:"The SMTP server files sent mail in Sent itself, so no copy is appended (default: true for Gmail)."`
	OAuthFlags    OAuthAddFlags `embed:""`
}

func (c *AccountAddCmd) Run(ctx context.Context, g *Globals, stdin io.Reader) error {
	if c.OAuthFlags.Provider != "" {
		if c.IMAPURL != "" || c.PasswordStdin {
			return errors.New("--oauth signs in with the provider: give neither --imap-url nor --password-stdin")
		}
		return c.addOAuth(ctx, g)
	}
	if c.IMAPURL == "" {
		return errors.New("--imap-url is required (or --oauth PROVIDER to sign in with Google, Microsoft or another provider)")
	}
	a, err := parseIMAPURL(c.IMAPURL, c.TLS)
	if err != nil {
		return err
	}
	a.Name, a.TLSSkipVerify, a.SyncInterval = c.Name, c.TLSSkipVerify, c.SyncInterval
	password, err := readPassword(c.PasswordStdin, stdin, "MAILSYNC_IMAP_PASSWORD")
	if err != nil {
		return err
	}
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := findUser(ctx, s, c.User)
	if err != nil {
		return err
	}
	a.UserID = u.ID
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	engine := g.syncEngine(s, box, nil)
	if err := engine.CheckLogin(ctx, a, password); err != nil {
		return fmt.Errorf("nothing saved: %w", err)
	}
	a.SecretEnc = box.Seal([]byte(password), secret.AccountContext(a.Login, a.IMAPHost))
	smtp, err := c.smtp(ctx, g, engine, a)
	if err != nil {
		return err
	}
	saved, err := s.CreateAccount(ctx, a)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%s already has an account named %q", c.User, c.Name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "account %d %q added: %s@%s:%d (%s)\n", saved.ID, saved.Name, saved.Login, saved.IMAPHost, saved.IMAPPort, saved.TLSMode)
	if smtp.Host != "" {
		if err := s.SetAccountSMTP(ctx, saved.ID, smtp); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "sends mail through %s:%d (%s)\n", smtp.Host, smtp.Port, smtp.TLSMode)
	}
	return nil
}

// smtpChecker tests SMTP settings with an account's credentials (the sync engine does).
type smtpChecker interface {
	CheckSMTP(ctx context.Context, a store.Account, c store.SMTP) error
}

// smtp is the new account's SMTP server: --smtp-url, tested (a failure saves nothing), or the IMAP
// host's usual submission server, kept only when its login works (the zero SMTP otherwise: the
// account syncs, and sends once it is given one).
func (c *AccountAddCmd) smtp(ctx context.Context, g *Globals, check smtpChecker, a store.Account) (store.SMTP, error) {
	guessHost, guessPort, guessTLS, savesSent := smtpsend.Guess(a.IMAPHost)
	if c.SMTPSavesSent != nil {
		savesSent = *c.SMTPSavesSent
	}
	if c.SMTPURL != "" {
		smtp, err := parseSMTPURL(c.SMTPURL)
		if err != nil {
			return store.SMTP{}, err
		}
		smtp.SavesSent = savesSent
		if err := check.CheckSMTP(ctx, a, smtp); err != nil {
			return store.SMTP{}, fmt.Errorf("nothing saved: the SMTP server %s:%d: %w", smtp.Host, smtp.Port, err)
		}
		return smtp, nil
	}
	guess := store.SMTP{Host: guessHost, Port: guessPort, TLSMode: string(guessTLS), SavesSent: savesSent}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := check.CheckSMTP(tctx, a, guess); err != nil {
		fmt.Fprintf(g.stdout, "no SMTP server found at %s:%d (%v); the account syncs, and sends once given one: mailsync account edit %q --smtp-url smtp://HOST\n",
			guess.Host, guess.Port, err, c.Name)
		return store.SMTP{}, nil
	}
	return guess, nil
}

// parseSMTPURL reads smtp://HOST[:PORT] (STARTTLS, 587), smtps://HOST[:PORT] (TLS, 465) and
// smtp+plain://HOST[:PORT] (no TLS, 25: a trusted network only).
func parseSMTPURL(raw string) (store.SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return store.SMTP{}, fmt.Errorf("--smtp-url: %w", err)
	}
	var c store.SMTP
	switch u.Scheme {
	case "smtp", "smtp+starttls", "submission":
		c.TLSMode, c.Port = "starttls", 587
	case "smtps":
		c.TLSMode, c.Port = "tls", 465
	case "smtp+plain":
		c.TLSMode, c.Port = "none", 25
	default:
		return store.SMTP{}, fmt.Errorf("--smtp-url %q: the scheme must be smtp:// (STARTTLS), smtps:// (TLS) or smtp+plain://", raw)
	}
	if u.User != nil {
		return store.SMTP{}, errors.New("--smtp-url carries no login: the account's own login and password sign in")
	}
	c.Host = u.Hostname()
	if c.Host == "" || (u.Path != "" && u.Path != "/") {
		return store.SMTP{}, fmt.Errorf("--smtp-url %q: want smtp[s]://HOST[:PORT]", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return store.SMTP{}, fmt.Errorf("--smtp-url %q: bad port", raw)
		}
		c.Port = n
	}
	return c, nil
}

// AccountEditCmd changes an account. The password is asked again for any change of destination:
// the stored one only ever goes to the server it was given for.
type AccountEditCmd struct {
	Account       string         `arg:"" help:"Account id or name."`
	Name          *string        `name:"name" help:"A new name."`
	IMAPURL       *string        `name:"imap-url" placeholder:"imap[s]://LOGIN@HOST[:PORT]" help:"A new server and login (the TLS mode follows the scheme unless --tls says otherwise)."`
	TLS           *string        `name:"tls" enum:"none,starttls,tls" help:"none, starttls or tls."`
	TLSSkipVerify *bool          `name:"tls-skip-verify" help:"Accept any server certificate (self-signed test servers only); =false checks again."`
	PasswordStdin bool           `name:"password-stdin" help:"Read the IMAP password from the first line of stdin (else MAILSYNC_IMAP_PASSWORD)."`
	SyncInterval  *time.Duration `name:"sync-interval" help:"Sync on a schedule this often (0: only when asked)."`
	SMTPURL       *string        `name:"smtp-url" placeholder:"smtp[s]://HOST[:PORT]" help:"Where the account sends mail (tested first with the account's login); none removes it."`
	SMTPSavesSent *bool          `name:"smtp-saves-sent" help:"The SMTP server files sent mail in Sent itself (no copy is appended)."`
}

func (c *AccountEditCmd) Run(ctx context.Context, g *Globals, stdin io.Reader) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	before, err := findAccount(ctx, s, c.Account)
	if err != nil {
		return err
	}
	if before.IsOAuth2() && (c.IMAPURL != nil || c.TLS != nil || c.TLSSkipVerify != nil || c.PasswordStdin) {
		return errors.New("nothing saved: an OAuth2 account's server and address come from its provider; only --name and --sync-interval change (mailsync account reauth signs it in again)")
	}
	a := before
	if c.IMAPURL != nil {
		tlsMode := ""
		if c.TLS != nil {
			tlsMode = *c.TLS
		}
		u, err := parseIMAPURL(*c.IMAPURL, tlsMode)
		if err != nil {
			return err
		}
		a.IMAPHost, a.IMAPPort, a.TLSMode, a.Login = u.IMAPHost, u.IMAPPort, u.TLSMode, u.Login
	} else if c.TLS != nil {
		a.TLSMode = *c.TLS
	}
	if c.TLSSkipVerify != nil {
		a.TLSSkipVerify = *c.TLSSkipVerify
	}
	if c.Name != nil {
		a.Name = *c.Name
	}
	if c.SyncInterval != nil {
		a.SyncInterval = *c.SyncInterval
	}
	destChanged := a.IMAPHost != before.IMAPHost || a.IMAPPort != before.IMAPPort || a.TLSMode != before.TLSMode ||
		a.TLSSkipVerify != before.TLSSkipVerify
	password, perr := readPassword(c.PasswordStdin, stdin, "MAILSYNC_IMAP_PASSWORD")
	havePassword := perr == nil
	if c.PasswordStdin && perr != nil {
		return perr
	}
	if destChanged && !havePassword {
		return errors.New("nothing saved: a new server, port, TLS mode or certificate check needs the password again " +
			"(--password-stdin or MAILSYNC_IMAP_PASSWORD); the stored one is never sent to a new destination")
	}
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	if destChanged || a.Login != before.Login || havePassword {
		if !havePassword {
			// Only the login changed: the stored password goes to the same server as before.
			plain, err := box.Open(before.SecretEnc, secret.AccountContext(before.Login, before.IMAPHost))
			if err != nil {
				return fmt.Errorf("nothing saved: the stored password does not open (%w); give it again with --password-stdin", err)
			}
			password = string(plain)
		}
		if err := g.syncEngine(s, box, nil).CheckLogin(ctx, a, password); err != nil {
			return fmt.Errorf("nothing saved: %w", err)
		}
		a.SecretEnc = box.Seal([]byte(password), secret.AccountContext(a.Login, a.IMAPHost))
		a.LastError = ""
	}
	if a.IMAPHost != before.IMAPHost || a.IMAPPort != before.IMAPPort {
		a.Restricted = false // the operator chose this destination
	}
	saved, err := s.UpdateAccount(ctx, a)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("the owner already has an account named %q", a.Name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "account %d %q: %s@%s:%d (%s)\n", saved.ID, saved.Name, saved.Login, saved.IMAPHost, saved.IMAPPort, saved.TLSMode)
	return c.editSMTP(ctx, g, s, box, saved)
}

// editSMTP applies --smtp-url and --smtp-saves-sent, testing a new server first.
func (c *AccountEditCmd) editSMTP(ctx context.Context, g *Globals, s *store.Store, box *secret.Box, a store.Account) error {
	if c.SMTPURL == nil && c.SMTPSavesSent == nil {
		return nil
	}
	cur, err := s.AccountSMTP(ctx, a.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	next := cur
	if c.SMTPURL != nil {
		if *c.SMTPURL == "none" {
			if err := s.SetAccountSMTP(ctx, a.ID, store.SMTP{}); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "sends no mail: SMTP server removed")
			return nil
		}
		if next, err = parseSMTPURL(*c.SMTPURL); err != nil {
			return err
		}
		next.SavesSent = cur.SavesSent || (cur.Host == "" && a.IMAPHost == "imap.gmail.com")
	}
	if c.SMTPSavesSent != nil {
		next.SavesSent = *c.SMTPSavesSent
	}
	if next.Host == "" {
		return errors.New("the account has no SMTP server: give --smtp-url")
	}
	if next.Host != cur.Host || next.Port != cur.Port || next.TLSMode != cur.TLSMode {
		if err := g.syncEngine(s, box, nil).CheckSMTP(ctx, a, next); err != nil {
			return fmt.Errorf("SMTP not changed: %s:%d: %w", next.Host, next.Port, err)
		}
	}
	if err := s.SetAccountSMTP(ctx, a.ID, next); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "sends mail through %s:%d (%s)\n", next.Host, next.Port, next.TLSMode)
	return nil
}

// parseIMAPURL reads imap[s]://LOGIN@HOST[:PORT]. tlsMode overrides the scheme's default.
func parseIMAPURL(raw, tlsMode string) (store.Account, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return store.Account{}, fmt.Errorf("--imap-url: %w", err)
	}
	var a store.Account
	switch u.Scheme {
	case "imaps":
		a.TLSMode, a.IMAPPort = "tls", 993
	case "imap":
		a.TLSMode, a.IMAPPort = "starttls", 143
	default:
		return store.Account{}, fmt.Errorf("--imap-url %q: the scheme must be imap:// or imaps://", raw)
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return store.Account{}, errors.New("--imap-url must not carry a password: give it on stdin (--password-stdin)")
	}
	a.Login = u.User.Username()
	a.IMAPHost = u.Hostname()
	if a.Login == "" || a.IMAPHost == "" {
		return store.Account{}, fmt.Errorf("--imap-url %q: want imap[s]://LOGIN@HOST[:PORT]", raw)
	}
	if p := u.Port(); p != "" {
		if a.IMAPPort, err = strconv.Atoi(p); err != nil || a.IMAPPort < 1 || a.IMAPPort > 65535 {
			return store.Account{}, fmt.Errorf("--imap-url %q: bad port", raw)
		}
	}
	if tlsMode != "" {
		a.TLSMode = tlsMode
	}
	return a, nil
}

// readPassword takes a secret from the first line of stdin, or else from the environment.
func readPassword(fromStdin bool, stdin io.Reader, env string) (string, error) {
	if fromStdin {
		return readSecretLine(stdin)
	}
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("no password: pipe it with --password-stdin or set %s", env)
}

// serverKey is MAILSYNC_SECRET_KEY, or the key file in the data directory. It is read from the
// environment rather than a flag so that it never shows in a process list. The file is created on
// first use, but never while the database holds passwords sealed under a key: a lost key file
// replaced silently would leave every account unable to log in, with nothing saying why.
func (g *Globals) serverKey(ctx context.Context, s *store.Store) ([]byte, error) {
	env, path := os.Getenv("MAILSYNC_SECRET_KEY"), filepath.Join(g.DataDir, "secret.key")
	key, err := secret.ReadKey(env, path)
	if !errors.Is(err, secret.ErrNoKeyFile) {
		return key, err
	}
	n, err := s.SealedSecrets(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, fmt.Errorf("the server key %s is missing, and the database holds %d IMAP passwords sealed under it: "+
			"restore the file from a backup (or set MAILSYNC_SECRET_KEY to the key, or --data-dir to where the file is); "+
			"to start over with a new key instead, create one (head -c 32 /dev/urandom | base64 > %s) and give every "+
			"account its password again (mailsync account edit ID --password-stdin)", path, n, path)
	}
	return secret.LoadKey("", path)
}

// secretBox seals and opens account passwords under the server key.
func (g *Globals) secretBox(ctx context.Context, s *store.Store) (*secret.Box, error) {
	key, err := g.serverKey(ctx, s)
	if err != nil {
		return nil, err
	}
	return secret.New(key)
}

// AccountListCmd lists accounts.
type AccountListCmd struct{}

func (c *AccountListCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	accounts, err := s.Accounts(ctx, 0)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tLOGIN\tSERVER\tTLS\tINTERVAL")
	for _, a := range accounts {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s:%d\t%s\t%s\n", a.ID, a.Name, a.Login, a.IMAPHost, a.IMAPPort, a.TLSMode, a.SyncInterval)
	}
	return tw.Flush()
}

// findAccount resolves an account by id or, when unambiguous, by name.
func findAccount(ctx context.Context, s *store.Store, ref string) (store.Account, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		a, err := s.Account(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return store.Account{}, fmt.Errorf("no account %d (see: mailsync account list)", id)
		}
		return a, err
	}
	accounts, err := s.Accounts(ctx, 0)
	if err != nil {
		return store.Account{}, err
	}
	var found []store.Account
	for _, a := range accounts {
		if a.Name == ref {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return store.Account{}, fmt.Errorf("no account named %q (see: mailsync account list)", ref)
	case 1:
		return found[0], nil
	default:
		return store.Account{}, fmt.Errorf("%d accounts are named %q: use the id (see: mailsync account list)", len(found), ref)
	}
}
