package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// TokenCmd manages API tokens.
type TokenCmd struct {
	Create TokenCreateCmd `cmd:"" help:"Make an API token for a user. Prints only the token, on stdout; it is shown once."`
	List   TokenListCmd   `cmd:"" help:"List API tokens (never the tokens themselves), of one user or of all."`
	Revoke TokenRevokeCmd `cmd:"" help:"Revoke an API token by its id (see: mailsync token list)."`
}

// TokenCreateCmd is "mailsync token create EMAIL".
type TokenCreateCmd struct {
	Email string `arg:"" help:"The user the token acts as."`
	Name  string `name:"name" default:"cli" help:"A label to recognise the token by."`
}

func (c *TokenCreateCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := s.UserByEmail(ctx, normalizeEmail(c.Email))
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("token create: no user %s (add one with: mailsync user add)", c.Email)
	}
	if err != nil {
		return err
	}
	token, hash := auth.NewToken()
	if _, err := s.CreateToken(ctx, u.ID, hash, c.Name); err != nil {
		return err
	}
	g.logger.Info("API token created", "user", u.Email, "name", c.Name)
	fmt.Fprintln(g.stdout, token)
	return nil
}

// TokenListCmd is "mailsync token list [EMAIL]".
type TokenListCmd struct {
	Email string `arg:"" optional:"" help:"Only this user's tokens."`
}

func (c *TokenListCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var userID int64
	if c.Email != "" {
		u, err := findUser(ctx, s, c.Email)
		if err != nil {
			return fmt.Errorf("token list: %w", err)
		}
		userID = u.ID
	}
	users, err := s.Users(ctx)
	if err != nil {
		return err
	}
	emails := make(map[int64]string, len(users))
	for _, u := range users {
		emails[u.ID] = u.Email
	}
	toks, err := s.Tokens(ctx, userID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tCREATED\tLAST USED")
	for _, t := range toks {
		used := "never"
		if !t.LastUsedAt.IsZero() {
			used = t.LastUsedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.ID, emails[t.UserID], t.Name, t.CreatedAt.Format(time.RFC3339), used)
	}
	return tw.Flush()
}

// TokenRevokeCmd is "mailsync token revoke ID".
type TokenRevokeCmd struct {
	ID int64 `arg:"" help:"The token's id."`
}

// Run deletes the token. A server that looked it up in the last seconds honours it until its
// token cache expires (2 s); after that, no instance does.
func (c *TokenRevokeCmd) Run(ctx context.Context, g *Globals) error {
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.RevokeToken(ctx, 0, c.ID); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("token revoke: no token %d (see: mailsync token list)", c.ID)
	} else if err != nil {
		return err
	}
	g.logger.Info("API token revoked", "token", c.ID)
	fmt.Fprintf(g.stdout, "token %d revoked\n", c.ID)
	return nil
}
