package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mailsync/internal/action"
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
	Add      []string `name:"add" placeholder:"FLAG" help:"A flag to set, e.g. '\\Seen' (repeatable)."`
	Remove   []string `name:"remove" placeholder:"FLAG" help:"A flag to clear, e.g. '\\Flagged' (repeatable)."`
	JSON     bool     `name:"json" help:"Print the final action as JSON."`
}

func (c *FlagCmd) Run(ctx context.Context, g *Globals) error {
	if len(c.Add) == 0 && len(c.Remove) == 0 {
		return errors.New("nothing to do: give --add or --remove")
	}
	for _, f := range slices.Concat(c.Add, c.Remove) {
		if err := checkFlag(f); err != nil {
			return err
		}
	}
	for _, f := range c.Add {
		if slices.ContainsFunc(c.Remove, func(r string) bool { return strings.EqualFold(r, f) }) {
			return fmt.Errorf("flag %s is both added and removed", f)
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
	if strings.TrimSpace(c.To) == "" || strings.ContainsAny(c.To, "\r\n\x00") {
		return fmt.Errorf("--to %q is not a folder name", c.To)
	}
	return g.runAction(ctx, c.Account, c.JSON, func(ctx context.Context, s *store.Store, a store.Account) (action.New, error) {
		if err := checkMessages(ctx, s, a, c.Messages); err != nil {
			return action.New{}, err
		}
		return action.New{AccountID: a.ID, UserID: a.UserID, Kind: action.Move,
			Request: action.Request{Messages: c.Messages, Folder: c.To}}, nil
	})
}

// checkFlag refuses what IMAP cannot carry as a flag: a command line typo should be refused here,
// in words, not by the server a moment later.
func checkFlag(f string) error {
	name := strings.TrimPrefix(f, `\`)
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"\]`, r)
	}) {
		return fmt.Errorf("%q is not an IMAP flag (such as '\\Seen', '\\Flagged' or a keyword like $Important)", f)
	}
	return nil
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

	changed := make(chan struct{}, 1)
	tasks.Changed = func(ch task.Task) {
		if ch.AccountID == a.ID {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
	workCtx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	w := worker.New(tasks, syncBody(g.syncEngine(s, box), reg), worker.Config{Account: a.ID, Concurrency: 1, PollInterval: 200 * time.Millisecond, Logger: g.logger})
	wg.Go(func() { _ = w.Run(workCtx) })
	final, err := g.waitAction(ctx, s, tasks, w, a, act, changed)
	stopWork()
	wg.Wait()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(actionView(final)); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(g.stdout, describeAction(a, final))
	}
	if final.State != action.Done {
		return fmt.Errorf("action %d %s: %s", final.ID, final.State, cmp(final.Error, string(final.State)))
	}
	return nil
}

func cmp(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// maxIdleStarts bounds the tasks started for an action that none of them takes: tasks that
// succeed without applying it (it is held back, or something is wrong) are not started for ever.
const maxIdleStarts = 3

// waitAction starts the account's task and follows it until the action is final. A task that
// ended before it took the action (it was past its push when the action was stored) is followed
// by another Start; a task that failed before the action is an error, with the task's reason (the
// action stays pending for the next sync). It never waits on a dead task (task.Manager.Follow).
func (g *Globals) waitAction(ctx context.Context, s *store.Store, tasks *task.Manager, w *worker.Worker, a store.Account, act action.Action, changed <-chan struct{}) (action.Action, error) {
	t, _, err := tasks.Start(ctx, a.ID, false)
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
					t.ID, a.Name, t.State, cur.ID, cur.State, cmp(t.Error, string(t.State)))
			case cur.NextAttemptAt.After(time.Now()):
				// A temporary failure held it back: the next task takes it from then on.
				fmt.Fprintf(g.stderr, "action %d waits until %s to be tried again: %s\n", cur.ID, cur.NextAttemptAt.Format(time.TimeOnly), cur.Error)
				if err := sleepCtx(ctx, time.Until(cur.NextAttemptAt)); err != nil {
					return action.Action{}, interrupted(cur)
				}
			case starts >= maxIdleStarts:
				return action.Action{}, fmt.Errorf("%d syncs of account %q ended without applying action %d (it stays %s)", starts, a.Name, cur.ID, cur.State)
			}
			if t, _, err = tasks.Start(ctx, a.ID, false); err != nil {
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

// actionJSON is an action as the API shows it (GET /api/actions/{id}).
type actionJSON struct {
	ID         int64         `json:"id"`
	AccountID  int64         `json:"account_id"`
	Kind       action.Kind   `json:"kind"`
	State      action.State  `json:"state"`
	Messages   []int64       `json:"messages"`
	Add        []string      `json:"add"`
	Remove     []string      `json:"remove"`
	Folder     string        `json:"folder,omitempty"`
	Permanent  bool          `json:"permanent"`
	Error      string        `json:"error"`
	Result     action.Result `json:"result"`
	Attempts   int           `json:"attempts"`
	TaskID     string        `json:"task_id"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	FinishedAt *time.Time    `json:"finished_at"`
}

func actionView(a action.Action) actionJSON {
	v := actionJSON{ID: a.ID, AccountID: a.AccountID, Kind: a.Kind, State: a.State,
		Messages: nonNil(a.Request.Messages), Add: nonNil(a.Request.Add), Remove: nonNil(a.Request.Remove),
		Folder: a.Request.Folder, Permanent: a.Request.Permanent, Error: a.Error, Result: a.Result,
		Attempts: a.Attempts, TaskID: a.TaskID, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	if !a.FinishedAt.IsZero() {
		v.FinishedAt = &a.FinishedAt
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
