package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// UserCmd manages the people who sign in to mailsync.
type UserCmd struct {
	Add UserAddCmd `cmd:"" help:"Add a user. The password is read from stdin, never from the command line."`
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
	password, err := readSecretLine(stdin)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	if len(password) < minPasswordLen {
		return fmt.Errorf("user add: the password must have at least %d characters", minPasswordLen)
	}
	email := normalizeEmail(c.Email)
	if !strings.Contains(email, "@") {
		return fmt.Errorf("user add: %q is not an email", c.Email)
	}
	hash, err := auth.HashPassword(password, auth.DefaultParams())
	if err != nil {
		return fmt.Errorf("user add: %w", err)
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

// readSecretLine reads the first line of r without its line end.
func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("nothing on stdin: pipe the password in, e.g. printf '%s\\n' \"$PASSWORD\" | mailsync ...")
	}
	return line, nil
}

// normalizeEmail is how emails are stored and looked up: the API's login does the same.
func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
