package main

import (
	"context"
	"errors"
	"fmt"

	"mailsync/internal/auth"
	"mailsync/internal/store"
)

// TokenCmd manages API tokens.
type TokenCmd struct {
	Create TokenCreateCmd `cmd:"" help:"Make an API token for a user. Prints only the token, on stdout; it is shown once."`
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
