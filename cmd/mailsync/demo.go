package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/mailgen"
	"mailsync/internal/memimap"
	"mailsync/internal/secret"
	"mailsync/internal/store"
)

// The demo (serve --demo) lets anyone try mailsync without a mailbox of their own: an IMAP server
// in the process, on loopback, holding a reproducible mailbox of generated mail, and a user and
// an account for it. Its password is printed and well known, so the demo refuses to listen
// anywhere but loopback.
const (
	demoEmail        = "demo@mailsync.test"
	demoPassword     = "demo"
	demoAccountName  = "Demo mailbox"
	demoIMAPLogin    = "demo"
	demoIMAPPassword = "demo-imap"
	demoSeed         = 2026
	demoMessages     = 3000
)

// demo is a running demo IMAP server.
type demo struct {
	imap     *memimap.Server
	messages int
	folders  int
}

// startDemo fills an in-memory IMAP server with generated mail and makes sure the demo user and
// account exist and point at it. It is idempotent: a restart finds the user and the account of
// the previous run and only moves the account to the new server's port. The new server holds the
// very same mailbox (same seed, same order of APPENDs, so the same UIDs and UIDVALIDITY), so the
// copy already stored stays valid and the next sync has nothing to fetch.
func startDemo(ctx context.Context, addr string, s *store.Store, box *secret.Box, log *slog.Logger) (*demo, error) {
	if !loopback(addr) {
		return nil, fmt.Errorf("demo: %s is not a loopback address; the demo's password is public, so it listens on 127.0.0.1 or ::1 only", addr)
	}
	start := time.Now()
	// IMAP4rev2 brings MOVE and UIDPLUS, which the demo's actions (move, delete) need.
	mem := memimap.New(memimap.WithLogger(log), memimap.WithIMAP4rev2())
	d := &demo{imap: mem}
	if err := d.fill(); err != nil {
		return nil, err
	}
	if err := mem.Listen("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := d.ensureAccount(ctx, s, box); err != nil {
		mem.Close()
		return nil, err
	}
	log.Info("demo IMAP server ready", "addr", mem.Addr(), "messages", d.messages, "folders", d.folders,
		"took", time.Since(start).Round(time.Millisecond))
	return d, nil
}

func (d *demo) fill() error {
	if _, err := d.imap.AddUser(demoIMAPLogin, demoIMAPPassword); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	folders := mailgen.DefaultFolders()
	for _, f := range folders {
		if f == "INBOX" {
			continue
		}
		if err := d.imap.CreateFolder(demoIMAPLogin, f); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	// Empty Trash and Drafts, for the actions: delete moves to Trash, a draft is saved in Drafts.
	for _, f := range []string{"Trash", "Drafts"} {
		if err := d.imap.CreateFolder(demoIMAPLogin, f); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	d.folders = len(folders) + 2
	return mailgen.Generate(mailgen.Options{Seed: demoSeed, Messages: demoMessages, Folders: folders}, func(m mailgen.Mail) error {
		if _, err := d.imap.Append(demoIMAPLogin, m.Folder, m.Raw, m.Date, m.Flags...); err != nil {
			return err
		}
		d.messages++
		return nil
	})
}

// ensureAccount creates the demo user and account, or points the existing account at this run's
// server.
func (d *demo) ensureAccount(ctx context.Context, s *store.Store, box *secret.Box) error {
	u, err := s.UserByEmail(ctx, demoEmail)
	if errors.Is(err, store.ErrNotFound) {
		hash, herr := auth.HashPassword(demoPassword, auth.DefaultParams())
		if herr != nil {
			return fmt.Errorf("demo: %w", herr)
		}
		u, err = s.CreateUser(ctx, demoEmail, hash, true)
		if errors.Is(err, store.ErrConflict) { // another instance won the race
			u, err = s.UserByEmail(ctx, demoEmail)
		}
	}
	if err != nil {
		return fmt.Errorf("demo: user: %w", err)
	}
	accounts, err := s.Accounts(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	a := store.Account{UserID: u.ID, Name: demoAccountName}
	if i := slices.IndexFunc(accounts, func(a store.Account) bool { return a.Name == demoAccountName }); i >= 0 {
		a = accounts[i]
	}
	a.IMAPHost, a.IMAPPort, a.TLSMode, a.TLSSkipVerify, a.Login = d.imap.Host(), d.imap.Port(), "none", false, demoIMAPLogin
	a.SecretEnc = box.Seal([]byte(demoIMAPPassword), secret.AccountContext(a.Login, a.IMAPHost))
	if a.ID == 0 {
		_, err = s.CreateAccount(ctx, a)
	} else {
		_, err = s.UpdateAccount(ctx, a)
	}
	if err != nil {
		return fmt.Errorf("demo: account: %w", err)
	}
	return nil
}

// announce tells the person who started the demo where to go and how to sign in.
func (d *demo) announce(w io.Writer, url string) {
	fmt.Fprintf(w, "\nmailsync demo: %d generated messages in %d folders on an IMAP server at %s\n", d.messages, d.folders, d.imap.Addr())
	fmt.Fprintf(w, "  open     %s\n", url)
	fmt.Fprintf(w, "  sign in  %s / %s\n", demoEmail, demoPassword)
	fmt.Fprintf(w, "  then press Sync now on %q\n\n", demoAccountName)
}

// Close stops the demo IMAP server.
func (d *demo) Close() error { return d.imap.Close() }

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
