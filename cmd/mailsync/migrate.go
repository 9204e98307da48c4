package main

import (
	"context"
	"fmt"

	"mailsync/internal/store"
)

// MigrateCmd brings the schema up to date and says what it did.
type MigrateCmd struct{}

func (c *MigrateCmd) Run(ctx context.Context, g *Globals) error {
	s, err := store.Open(ctx, g.DB)
	if err != nil {
		return err
	}
	defer s.Close()
	applied, err := s.Migrate(ctx)
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(g.stdout, "applied %d %s\n", m.Version, m.Name)
	}
	current, _, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "schema at version %d\n", current)
	return nil
}
