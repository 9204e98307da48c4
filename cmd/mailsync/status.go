package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"mailsync/internal/store"
)

// StatusCmd shows each account's current or last sync.
type StatusCmd struct {
	Account string `arg:"" optional:"" help:"Account id or name (default: every account)."`
}

func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	var accounts []store.Account
	if c.Account != "" {
		a, err := findAccount(ctx, s, c.Account)
		if err != nil {
			return err
		}
		accounts = []store.Account{a}
	} else if accounts, err = s.Accounts(ctx, 0); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tSTATE\tLIVE\tPROGRESS\tNEW\tUPDATED\tDELETED\tFINISHED\tERROR")
	for _, a := range accounts {
		t, err := tasks.Latest(ctx, a.ID)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(tw, "%s\tnever synced\t\t\t\t\t\t\t\n", a.Name)
			continue
		}
		if err != nil {
			return err
		}
		v := tasks.View(t)
		finished := "-"
		if v.FinishedAt != nil {
			finished = v.FinishedAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d/%d (%.0f%%)\t%d\t%d\t%d\t%s\t%s\n", a.Name, v.State, v.Live,
			v.Progress.MessagesDone, v.Progress.MessagesTotal, v.Percent, v.Progress.New, v.Progress.Updated,
			v.Progress.Deleted, finished, v.Error)
	}
	return tw.Flush()
}
