package main

import (
	"context"
	"fmt"
	"time"
)

// RepairCmd runs the reaper once and prints every task it changed. It is safe to run at any time,
// beside running servers: it changes only tasks that are dead by the configured timeouts.
type RepairCmd struct{}

func (c *RepairCmd) Run(ctx context.Context, g *Globals) error {
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	reaped, err := tasks.Reap(ctx)
	if err != nil {
		return err
	}
	if len(reaped) == 0 {
		fmt.Fprintln(g.stdout, "nothing to repair: no dead sync tasks")
		return nil
	}
	for _, t := range reaped {
		fmt.Fprintf(g.stdout, "task %s (account %d, attempt %d of %d, created %s): now %s: %s\n",
			t.ID, t.AccountID, t.Attempt, t.MaxAttempts, t.CreatedAt.Format(time.RFC3339), t.State, t.Error)
	}
	fmt.Fprintf(g.stdout, "repaired %d task(s)\n", len(reaped))
	return nil
}
