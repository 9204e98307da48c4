package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/events"
	"mailsync/internal/httpapi"
	"mailsync/internal/store"
)

// ChangesCmd prints an account's change log (docs/changes.md) and, with --follow, its changes as
// they commit on any instance: a tail -f for mail.
type ChangesCmd struct {
	Account string        `arg:"" help:"Account id or name."`
	After   *int64        `name:"after" placeholder:"SEQ" help:"Print the changes after this one (default: from the oldest change kept)."`
	Follow  bool          `name:"follow" short:"f" help:"Then wait for new changes and print them as they commit, until interrupted."`
	JSON    bool          `name:"json" help:"Print one JSON object per line, as the API serves a change."`
	Poll    time.Duration `name:"poll" default:"1s" help:"With --follow, how often to look for new changes (on PostgreSQL a commit on any instance also wakes it at once)."`
}

// changesPage is how many changes one read takes.
const changesPage = 500

func (c *ChangesCmd) Run(ctx context.Context, g *Globals) error {
	if c.Poll <= 0 {
		return fmt.Errorf("--poll must be positive, not %s", c.Poll)
	}
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	a, err := findAccount(ctx, s, c.Account)
	if err != nil {
		return err
	}
	head, err := s.ChangeHead(ctx, a.ID)
	if err != nil {
		return err
	}
	after := head.Floor
	if c.After != nil {
		after = *c.After
		if after < 0 || after > head.Last {
			return fmt.Errorf("account %q has no change %d: its log ends at %d", a.Name, after, head.Last)
		}
	}

	var wake <-chan struct{}
	if c.Follow && s.Dialect() == "postgres" {
		// A commit on any instance wakes the loop through LISTEN; the poll covers a lost signal.
		bus := events.NewBus()
		bridge := events.NewBridge(bus, g.DB, "", g.logger)
		sig, stop := bus.Subscribe(events.ChangesTopic(a.ID))
		defer stop()
		bridgeCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = bridge.Run(bridgeCtx)
		}()
		defer func() {
			cancel()
			<-done
		}()
		wake = sig
	}
	poll := time.NewTicker(c.Poll)
	defer poll.Stop()
	for {
		cs, err := s.Changes(ctx, a.ID, after, changesPage)
		if ctx.Err() != nil {
			return nil // interrupted: a clean end of a follow
		}
		if errors.Is(err, changes.ErrGone) {
			return goneError(ctx, s, a, after)
		}
		if err != nil {
			return err
		}
		for _, ch := range cs {
			if err := c.print(g.stdout, ch); err != nil {
				return err
			}
			after = ch.Seq
		}
		if len(cs) == changesPage {
			continue
		}
		if !c.Follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-poll.C:
		}
	}
}

// goneError tells the reader of a pruned position what to do.
func goneError(ctx context.Context, s *store.Store, a store.Account, after int64) error {
	head, err := s.ChangeHead(ctx, a.ID)
	if err != nil {
		return err
	}
	return fmt.Errorf("the changes of account %q after %d are no longer kept (the oldest kept is %d): "+
		"re-read the account's folders and messages (GET /api/accounts/%d/folders and /messages), then follow from --after %d, its last change",
		a.Name, after, head.Floor+1, a.ID, head.Last)
}

func (c *ChangesCmd) print(w io.Writer, ch changes.Change) error {
	if c.JSON {
		line, err := json.Marshal(httpapi.NewChangeJSON(ch))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintf(w, "%s  %-6d %-15s %s\n", ch.At.Local().Format(time.DateTime), ch.Seq, ch.Kind, describe(ch))
	return err
}

// describe is the readable rest of a change's line: where, and what its payload says.
func describe(ch changes.Change) string {
	var b strings.Builder
	b.WriteString(ch.Folder)
	if ch.UID != 0 {
		fmt.Fprintf(&b, " uid %d", ch.UID)
	}
	switch ch.Kind {
	case changes.MessageCreated:
		var m changes.Message
		if json.Unmarshal(ch.Data, &m) == nil {
			fmt.Fprintf(&b, "  %q from %s, %d bytes %v", m.Subject, m.From, m.Size, m.Flags)
		}
	case changes.MessageUpdated:
		var f changes.FlagUpdate
		if json.Unmarshal(ch.Data, &f) == nil {
			fmt.Fprintf(&b, "  %v -> %v", f.OldFlags, f.Flags)
		}
	case changes.MessageDeleted:
		var m changes.MessageGone
		if json.Unmarshal(ch.Data, &m) == nil && m.MessageID != "" {
			fmt.Fprintf(&b, "  %s", m.MessageID)
		}
	case changes.FolderCreated, changes.FolderRenamed, changes.FolderDeleted, changes.FolderReset:
		var f changes.Folder
		if json.Unmarshal(ch.Data, &f) == nil {
			if f.OldName != "" {
				fmt.Fprintf(&b, " (was %s)", f.OldName)
			}
			if f.OldUIDValidity != 0 {
				fmt.Fprintf(&b, "  uidvalidity %d -> %d", f.OldUIDValidity, f.UIDValidity)
			} else if f.UIDValidity != 0 {
				fmt.Fprintf(&b, "  uidvalidity %d", f.UIDValidity)
			}
			if f.Dropped != 0 {
				fmt.Fprintf(&b, ", %d messages dropped", f.Dropped)
			}
		}
	case changes.SyncSucceeded, changes.SyncFailed:
		var y changes.Sync
		if json.Unmarshal(ch.Data, &y) == nil {
			fmt.Fprintf(&b, "task %s attempt %d: %d new, %d updated, %d deleted", y.TaskID, y.Attempt, y.New, y.Updated, y.Deleted)
			if y.Error != "" {
				fmt.Fprintf(&b, ": %s", y.Error)
			}
		}
	}
	return strings.TrimSpace(b.String())
}
