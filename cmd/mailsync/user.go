package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// UserCmd manages the people who sign in to mailsync.
type UserCmd struct {
	Add    UserAddCmd    `cmd:"" help:"Add a user. The password is read from stdin, never from the command line."`
	List   UserListCmd   `cmd:"" help:"List users."`
	Passwd UserPasswdCmd `cmd:"" help:"Set a user's password (from stdin) and end every session and API token of theirs."`
	Delete UserDeleteCmd `cmd:"" help:"Delete a user with their sessions, tokens, accounts and mail."`
}

// UserAddCmd is "mailsync user add EMAIL [--admin] --password-stdin".
type UserAddCmd struct {
	Email         string `arg:"" help:"The user's email; it is their login."`
	Admin         bool   `name:"admin" help:"Let the user see every account's health and reap dead syncs."`
	PasswordStdin bool   `name:"password-stdin" required:"" help:"Read the password from the first line of stdin."`
}

// minPasswordLen is the shortest password accepted for a user.
const minPasswordLen = 8

func (c *UserAddCmd) Run(ctx context.Context, g *Globals, stdin io.Reader) error {
	hash, err := newUserPassword(stdin)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	email := normalizeEmail(c.Email)
	if !strings.Contains(email, "@") {
		return fmt.Errorf("user add: %q is not an email", c.Email)
	}
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := s.CreateUser(ctx, email, hash, c.Admin)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("user add: %s already exists", email)
	}
	if err != nil {
		return err
	}
	role := ""
	if u.IsAdmin {
		role = " (admin)"
	}
	fmt.Fprintf(g.stdout, "added user %d %s%s\n", u.ID, u.Email, role)
	return nil
}

// newUserPassword reads a user's password from stdin and hashes it.
func newUserPassword(stdin io.Reader) (string, error) {
	password, err := readSecretLine(stdin)
	if err != nil {
		return "", err
	}
	if len(password) < minPasswordLen {
		return "", fmt.Errorf("the password must have at least %d characters", minPasswordLen)
	}
	return auth.HashPassword(password, auth.DefaultParams())
}

// findUser resolves a user by email, with a hint when there is none.
func findUser(ctx context.Context, s *store.Store, email string) (store.User, error) {
	u, err := s.UserByEmail(ctx, normalizeEmail(email))
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, fmt.Errorf("no user %s (see: mailsync user list)", email)
	}
	return u, err
}

// UserListCmd is "mailsync user list".
type UserListCmd struct{}

func (c *UserListCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	users, err := s.Users(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tADMIN\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%d\t%s\t%v\t%s\n", u.ID, u.Email, u.IsAdmin, u.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

// UserPasswdCmd is "mailsync user passwd EMAIL --password-stdin".
type UserPasswdCmd struct {
	Email         string `arg:"" help:"The user's email."`
	PasswordStdin bool   `name:"password-stdin" required:"" help:"Read the new password from the first line of stdin."`
}

// Run sets the password and, in the same transaction, ends every session and deletes every API
// token of the user: whoever knew the old password may have made them. Sessions end at once on
// every server; a server that looked a token up in the last seconds honours it until its token
// cache expires (2 s).
func (c *UserPasswdCmd) Run(ctx context.Context, g *Globals, stdin io.Reader) error {
	hash, err := newUserPassword(stdin)
	if err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := findUser(ctx, s, c.Email)
	if err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	r, err := s.SetPassword(ctx, u.ID, hash)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "password of %s changed; %d sessions and %d API tokens ended\n", u.Email, r.Sessions, r.Tokens)
	return nil
}

// UserDeleteCmd is "mailsync user delete EMAIL --yes".
type UserDeleteCmd struct {
	Email string `arg:"" help:"The user's email."`
	Yes   bool   `name:"yes" help:"Confirm: the user's accounts and every message stored for them are deleted too."`
}

func (c *UserDeleteCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := findUser(ctx, s, c.Email)
	if err != nil {
		return fmt.Errorf("user delete: %w", err)
	}
	accounts, err := s.Accounts(ctx, u.ID)
	if err != nil {
		return err
	}
	if !c.Yes {
		return fmt.Errorf("user delete: %s has %d accounts, which would be deleted with all their mail; add --yes to confirm", u.Email, len(accounts))
	}
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "deleted user %d %s with %d accounts\n", u.ID, u.Email, len(accounts))
	return nil
}

// readSecretLine reads the first line of r without its line end.
func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("nothing on stdin: pipe the password in, e.g. printf '%s\\n' \"$PASSWORD\" | mailsync <command> --password-stdin")
	}
	return line, nil
}

// normalizeEmail is how emails are stored and looked up: the API's login does the same.
func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
