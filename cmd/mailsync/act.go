package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/httpapi"
	"mailsync/internal/metrics"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// The action commands (flag, move, send) are thin wrappers over the actions the API creates, for
// scripts: each stores one action, starts the account's task through the same idempotent Start as
// the API and `mailsync sync` (joining a live one), runs a worker for the account while it waits
// (so it needs no server, and a server's worker may as well do the work), and waits for the
// action's final state. The exit code is non-zero unless the action was done.

// FlagCmd sets and clears flags of stored messages, on the server.
type FlagCmd struct {
	Account  string   `arg:"" help:"Account id or name."`
	Messages []int64  `arg:"" name:"message-id" help:"mailsync message ids (as the API and the web UI show them)."`
	Add      []string `name:"add" sep:"none" placeholder:"FLAG" help:"A flag to set, e.g. '\\Seen' (repeatable)."`
	Remove   []string `name:"remove" sep:"none" placeholder:"FLAG" help:"A flag to clear, e.g. '\\Flagged' (repeatable)."`
	JSON     bool     `name:"json" help:"Print the final action as JSON."`
}

func (c *FlagCmd) Run(ctx context.Context, g *Globals) error {
	if len(c.Add) == 0 && len(c.Remove) == 0 {
		return errors.New("nothing to do: give --add or --remove")
	}
	// The API's checks, so that a typo is refused here, in words, not by the server later.
	for _, f := range slices.Concat(c.Add, c.Remove) {
		if err := action.CheckFlag(f); err != nil {
			return err
		}
	}
	for _, f := range c.Add {
		if action.HasFlag(c.Remove, f) {
			return fmt.Errorf("the flag %s is both added and removed", f)
		}
	}
	return g.runAction(ctx, c.Account, c.JSON, func(ctx context.Context, s *store.Store, a store.Account) (action.New, error) {
		if err := checkMessages(ctx, s, a, c.Messages); err != nil {
			return action.New{}, err
		}
		return action.New{AccountID: a.ID, UserID: a.UserID, Kind: action.Flags,
			Request: action.Request{Messages: c.Messages, Add: c.Add, Remove: c.Remove}}, nil
	})
}

// MoveCmd moves stored messages to another folder of their account, on the server.
type MoveCmd struct {
	Account  string  `arg:"" help:"Account id or name."`
	Messages []int64 `arg:"" name:"message-id" help:"mailsync message ids (as the API and the web UI show them)."`
	To       string  `name:"to" required:"" placeholder:"FOLDER" help:"The destination folder, by its full name (e.g. Archive or Lists/Go)."`
	JSON     bool    `name:"json" help:"Print the final action as JSON."`
}

func (c *MoveCmd) Run(ctx context.Context, g *Globals) error {
	if err := action.CheckFolder(c.To); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	return g.runAction(ctx, c.Account, c.JSON, func(ctx context.Context, s *store.Store, a store.Account) (action.New, error) {
		if err := checkMessages(ctx, s, a, c.Messages); err != nil {
			return action.New{}, err
		}
		// As the API: a folder the store knows is certain; with none stored yet (no sync so far)
		// the server decides, and the action fails saying so.
		folders, err := s.Folders(ctx, a.ID)
		if err != nil {
			return action.New{}, err
		}
		if len(folders) > 0 && !slices.ContainsFunc(folders, func(f store.Folder) bool { return f.Name == c.To }) {
			return action.New{}, fmt.Errorf("account %q has no folder %q (as of its last sync)", a.Name, c.To)
		}
		return action.New{AccountID: a.ID, UserID: a.UserID, Kind: action.Move,
			Request: action.Request{Messages: c.Messages, Folder: c.To}}, nil
	})
}

// checkMessages refuses ids that are not stored for the account, before anything is created.
func checkMessages(ctx context.Context, s *store.Store, a store.Account, ids []int64) error {
	refs, err := s.MessageRefs(ctx, a.ID, ids)
	if err != nil {
		return err
	}
	var missing []string
	for _, id := range ids {
		if _, ok := refs[id]; !ok {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("account %q stores no message %s (see the web UI or GET /api/accounts/%d/messages)", a.Name, strings.Join(missing, ", "), a.ID)
	}
	return nil
}

// runAction stores the action build makes, has the account's task apply it and prints how it
// ended. A failed action (or one that did not go through: conflict, unknown, cancelled) is an
// error, so that the exit code says it.
func (g *Globals) runAction(ctx context.Context, account string, asJSON bool, build func(context.Context, *store.Store, store.Account) (action.New, error)) error {
	s, tasks, err := g.openTasks(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := findAccount(ctx, s, account)
	if err != nil {
		return err
	}
	if a.ReauthRequired() {
		return fmt.Errorf("account %q must sign in again: its provider no longer accepts its authorization (mailsync account reauth %s)", a.Name, account)
	}
	n, err := build(ctx, s, a)
	if err != nil {
		return err
	}
	box, err := g.secretBox(ctx, s)
	if err != nil {
		return err
	}
	reg := metrics.New(s)
	if err := g.setupOAuth(ctx, s, box, reg); err != nil {
		return err
	}
	act, _, err := s.CreateAction(ctx, n)
	if err != nil {
		return err
	}

	w, changed, stopWork := g.accountWorker(ctx, tasks, a.ID, syncBody(g.syncEngine(s, box, reg), reg))
	final, err := g.waitAction(ctx, s, tasks, w, a, act, changed)
	stopWork()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(httpapi.ActionView(final)); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(g.stdout, describeAction(a, final))
	}
	if final.State != action.Done {
		return fmt.Errorf("action %d %s: %s", final.ID, final.State, cmp.Or(final.Error, string(final.State)))
	}
	return nil
}

// maxIdleStarts bounds the tasks started for an action that none of them takes: tasks that
// succeed without applying it (it is held back, or something is wrong) are not started for ever.
const maxIdleStarts = 3

// waitAction starts the account's task and follows it until the action is final. A task that
// ended before it took the action (it was past its push when the action was stored) is followed
// by another Start; a task that failed before the action is an error, with the task's reason (the
// action stays pending for the next sync). It never waits on a dead task (task.Manager.Follow).
func (g *Globals) waitAction(ctx context.Context, s *store.Store, tasks *task.Manager, w *worker.Worker, a store.Account, act action.Action, changed <-chan struct{}) (action.Action, error) {
	t, err := startTask(ctx, tasks, a.ID)
	if err != nil {
		return action.Action{}, err
	}
	starts, attempts := 1, act.Attempts
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := s.Action(ctx, act.ID)
		if err != nil {
			return action.Action{}, err
		}
		if !cur.State.Open() {
			return cur, nil
		}
		if cur.Attempts != attempts { // a task took it: the starts so far were not idle
			attempts, starts = cur.Attempts, 0
		}
		tk, err := tasks.Get(ctx, t.ID)
		if err != nil {
			return action.Action{}, err
		}
		t = tk
		if !w.Runs(tk.ID) { // a run of this process proves itself alive, or fences itself and stops
			if t, err = tasks.Follow(ctx, tk); err != nil {
				g.logger.Warn("could not settle a dead sync; trying again", "task", tk.ID, "err", err)
				t = tk
			}
		}
		if !t.State.Active() {
			switch {
			case t.State != task.Succeeded:
				return action.Action{}, fmt.Errorf("the sync %s of account %q %s before action %d was applied (it stays %s, for the next sync): %s",
					t.ID, a.Name, t.State, cur.ID, cur.State, cmp.Or(t.Error, string(t.State)))
			case cur.NextAttemptAt.After(time.Now()):
				// A temporary failure held it back: the next task takes it from then on.
				fmt.Fprintf(g.stderr, "action %d waits until %s to be tried again: %s\n", cur.ID, cur.NextAttemptAt.Format(time.TimeOnly), cur.Error)
				if err := sleepCtx(ctx, time.Until(cur.NextAttemptAt)); err != nil {
					return action.Action{}, interrupted(cur)
				}
			case starts >= maxIdleStarts:
				return action.Action{}, fmt.Errorf("%d syncs of account %q ended without applying action %d (it stays %s)", starts, a.Name, cur.ID, cur.State)
			}
			if t, err = startTask(ctx, tasks, a.ID); err != nil {
				return action.Action{}, err
			}
			starts++
		}
		select {
		case <-ctx.Done():
			return action.Action{}, interrupted(cur)
		case <-tick.C:
		case <-changed:
		}
	}
}

// startTask is the idempotent Start, tried again while another session holds the account's task
// row (it is starting or ending a task of the account: a moment).
func startTask(ctx context.Context, tasks *task.Manager, accountID int64) (task.Task, error) {
	for try := 1; ; try++ {
		t, _, err := tasks.Start(ctx, accountID, false)
		if !errors.Is(err, task.ErrBusy) || try == 20 {
			return t, err
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return task.Task{}, err
		}
	}
}

func interrupted(a action.Action) error {
	return fmt.Errorf("interrupted; action %d stays %s and is applied by the account's next sync", a.ID, a.State)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// describeAction is the one line printed for a final action.
func describeAction(a store.Account, act action.Action) string {
	var what string
	switch act.Kind {
	case action.Flags:
		var parts []string
		for _, f := range act.Request.Add {
			parts = append(parts, "+"+f)
		}
		for _, f := range act.Request.Remove {
			parts = append(parts, "-"+f)
		}
		what = fmt.Sprintf("flags %s on %s", strings.Join(parts, " "), countMessages(act))
	case action.Move:
		what = fmt.Sprintf("move of %s to %s", countMessages(act), act.Request.Folder)
	case action.Delete:
		what = "delete of " + countMessages(act)
	case action.Send:
		what = fmt.Sprintf("send of %q to %s", act.Request.Subject, strings.Join(act.Request.Recipients, ", "))
	default:
		what = string(act.Kind)
	}
	line := fmt.Sprintf("%s: action %d, %s: %s", a.Name, act.ID, what, act.State)
	switch {
	case act.Error != "":
		line += ": " + act.Error
	case len(act.Result.Gone) > 0:
		line += fmt.Sprintf(" (%d already gone)", len(act.Result.Gone))
	case act.Result.SMTP != "":
		line += " (" + act.Result.SMTP + ")"
	}
	return line
}

func countMessages(act action.Action) string {
	if n := len(act.Request.Messages); n != 1 {
		return fmt.Sprintf("%d messages", n)
	}
	return fmt.Sprintf("message %d", act.Request.Messages[0])
}
