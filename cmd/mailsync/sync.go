package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"mailsync/internal/metrics"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// SyncCmd syncs one account now and waits for the end. It starts the account's task through the
// same idempotent Start as the API, so it joins a sync that is already live (started by a server
// or another terminal) instead of starting a second one. While it waits it also runs a worker for
// this account only, so it needs no server; if a server's worker claims the task first, this one
// just watches. A joined task whose worker died (a sync killed a moment ago) is not waited on: the
// wait reaps it and the worker here runs its next attempt (task.Manager.Follow).
type SyncCmd struct {
	Account string `arg:"" help:"Account id or name."`
	Full    bool   `help:"Rescan everything and reconcile, instead of an incremental sync."`
	JSON    bool   `name:"json" help:"Print the final task as JSON."`
}

func (c *SyncCmd) Run(ctx context.Context, g *Globals) error {
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := findAccount(ctx, s, c.Account)
	if err != nil {
		return err
	}
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	if a.ReauthRequired() {
		return fmt.Errorf("account %q must sign in again: its provider no longer accepts its authorization (mailsync account reauth %s)", a.Name, c.Account)
	}
	reg := metrics.New(s)
	if err := g.setupOAuth(ctx, s, box, reg); err != nil {
		return err
	}
	body := syncBody(g.syncEngine(s, box, reg), reg)
	t, created, err := tasks.Start(ctx, a.ID, c.Full)
	if err != nil {
		return err
	}
	if !created {
		fmt.Fprintf(g.stderr, "joining the live sync %s of account %q\n", t.ID, a.Name)
	}

	w, changed, stopWork := g.accountWorker(ctx, tasks, a.ID, body)
	final, err := c.wait(ctx, g, tasks, w, t, changed)
	stopWork()
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(tasks.View(final)); err != nil {
			return err
		}
	} else {
		p := final.Progress
		fmt.Fprintf(g.stdout, "%s: %s in %s: %d new, %d updated, %d deleted, %d folders, %.1f MB\n",
			a.Name, final.State, final.FinishedAt.Sub(final.StartedAt).Round(time.Millisecond),
			p.New, p.Updated, p.Deleted, p.FoldersTotal, float64(p.BytesDone)/1e6)
	}
	if final.State != task.Succeeded {
		return fmt.Errorf("sync %s %s: %s", final.ID, final.State, final.Error)
	}
	return nil
}

// wait follows the task until it ends, drawing a progress bar on a terminal. It never waits on a
// dead task: one whose worker is gone is reaped and followed on (task.Manager.Follow).
func (c *SyncCmd) wait(ctx context.Context, g *Globals, tasks *task.Manager, w *worker.Worker, t task.Task, changed <-chan struct{}) (task.Task, error) {
	var bar *progressbar.ProgressBar
	if f, ok := g.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) && !c.JSON {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(g.stderr), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false), progressbar.OptionClearOnFinish())
		defer func() { _ = bar.Finish() }()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := tasks.Get(ctx, t.ID)
		if err != nil {
			return task.Task{}, err
		}
		next := cur
		if !w.Runs(cur.ID) { // a run of this process proves itself alive, or fences itself and stops
			if next, err = tasks.Follow(ctx, cur); err != nil {
				g.logger.Warn("could not settle a dead sync; trying again", "task", cur.ID, "err", err)
			}
		}
		switch {
		case next.ID != cur.ID:
			fmt.Fprintf(g.stderr, "the sync %s was replaced by %s; following it\n", cur.ID, next.ID)
		case cur.State == task.Running && next.State == task.Queued:
			fmt.Fprintf(g.stderr, "the sync %s had stopped sending heartbeats (its process is gone); running it again\n", cur.ID)
		}
		t = next
		if !t.State.Active() {
			return t, nil
		}
		if bar != nil {
			p := t.Progress
			bar.ChangeMax(max(p.MessagesTotal, 1))
			bar.Describe(fmt.Sprintf("%s %s", t.State, task.Phase(t)))
			_ = bar.Set(p.MessagesDone)
		}
		select {
		case <-ctx.Done():
			return task.Task{}, errors.New("interrupted; the sync goes on if a server runs, else it resumes at the next sync")
		case <-tick.C:
		case <-changed:
		}
	}
}

// accountWorker runs a worker for one account's tasks only, while a command waits on a task or an
// action of it (so the command needs no server; a server's worker may as well do the work). The
// channel is signalled at every transition of the account's tasks this process makes: the wait
// wakes at once then, and its poll sees what a server's worker does. stop ends the worker and
// returns once it has.
func (g *Globals) accountWorker(ctx context.Context, tasks *task.Manager, accountID int64, body worker.Body) (w *worker.Worker, changed <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	tasks.Changed = func(t task.Task) {
		if t.AccountID == accountID {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	workCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	w = worker.New(tasks, body, worker.Config{Account: accountID, Concurrency: 1, PollInterval: 200 * time.Millisecond, Logger: g.logger})
	wg.Go(func() { _ = w.Run(workCtx) })
	return w, ch, func() {
		cancel()
		wg.Wait()
	}
}
