// Package changestest proves a change log exact: it replays an account's log from its first
// change over an empty model of the mailbox (folder → UID → flags) and compares the result with
// what the store holds. A change that does not apply to the model as it stands (a message created
// twice, a deletion of a UID not there, an update whose old flags are not the model's, a change
// that changes nothing) is an error, so a replay that ends equal to the store proves that no
// change is missing, none is extra and none is repeated.
package changestest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"mailsync/internal/changes"
	"mailsync/internal/store"
)

// Folder is one folder of the model: its UIDVALIDITY and its messages' flags (sorted) by UID.
type Folder struct {
	UIDValidity uint32
	Messages    map[uint32][]string
}

// Model is a mailbox as a change log describes it, by folder name.
type Model map[string]*Folder

// Tampered is a message a test changed or removed in the store behind the syncer's back (a row
// updated or deleted by hand): no change can say so, and the repair that follows (force_full
// downloading it again, or writing its flags back) is a change against the damaged row, not
// against the model. Replay applies the first message.created or message.updated of a tampered
// message that the model still holds without checking it against the model: the message takes
// the flags the change gives.
type Tampered struct {
	Folder string
	UID    uint32
}

// Replay applies cs, which must be an account's log from its first change on (seq 1, 2, 3, ...),
// to an empty model, and returns the model or the first change that does not apply.
func Replay(cs []changes.Change, tampered ...Tampered) (Model, error) {
	m := Model{}
	excused := map[Tampered]bool{}
	for _, l := range tampered {
		excused[l] = true
	}
	ended := map[string]bool{} // tasks whose sync.* was seen
	for i, c := range cs {
		if c.Seq != int64(i+1) {
			return nil, fmt.Errorf("change %d has seq %d: the log has a gap or does not start at 1", i+1, c.Seq)
		}
		if repaired, err := m.repair(c, excused); err != nil || repaired {
			if err != nil {
				return nil, fmt.Errorf("change %d (%s %q uid %d, task %s): %w", c.Seq, c.Kind, c.Folder, c.UID, c.TaskID, err)
			}
			continue
		}
		if err := m.apply(c, ended); err != nil {
			return nil, fmt.Errorf("change %d (%s %q uid %d, task %s): %w", c.Seq, c.Kind, c.Folder, c.UID, c.TaskID, err)
		}
	}
	return m, nil
}

// repair applies c leniently when it is the first creation or update of a tampered message the
// model holds, and says whether it did.
func (m Model) repair(c changes.Change, excused map[Tampered]bool) (bool, error) {
	t := Tampered{c.Folder, c.UID}
	f := m[c.Folder]
	if !excused[t] || f == nil || (c.Kind != changes.MessageCreated && c.Kind != changes.MessageUpdated) {
		return false, nil
	}
	if _, ok := f.Messages[c.UID]; !ok {
		return false, nil
	}
	var flags []string
	if c.Kind == changes.MessageCreated {
		var p changes.Message
		if err := decode(c, &p); err != nil {
			return false, err
		}
		flags = p.Flags
	} else {
		var p changes.FlagUpdate
		if err := decode(c, &p); err != nil {
			return false, err
		}
		flags = p.Flags
	}
	delete(excused, t)
	f.Messages[c.UID] = sorted(flags)
	return true, nil
}

func (m Model) apply(c changes.Change, ended map[string]bool) error {
	f := m[c.Folder]
	needFolder := func() error {
		if f == nil {
			return fmt.Errorf("folder %q is not in the model", c.Folder)
		}
		return nil
	}
	switch c.Kind {
	case changes.FolderCreated:
		var p changes.Folder
		if err := decode(c, &p); err != nil {
			return err
		}
		if f != nil {
			return fmt.Errorf("folder %q created twice", c.Folder)
		}
		m[c.Folder] = &Folder{UIDValidity: p.UIDValidity, Messages: map[uint32][]string{}}
	case changes.FolderRenamed:
		var p changes.Folder
		if err := decode(c, &p); err != nil {
			return err
		}
		src := m[p.OldName]
		switch {
		case src == nil:
			return fmt.Errorf("renamed from %q, which is not in the model", p.OldName)
		case f != nil:
			return fmt.Errorf("renamed onto %q, which is in the model", c.Folder)
		case p.UIDValidity != src.UIDValidity:
			return fmt.Errorf("renamed with UIDVALIDITY %d, the model has %d", p.UIDValidity, src.UIDValidity)
		}
		delete(m, p.OldName)
		m[c.Folder] = src
	case changes.FolderDeleted:
		var p changes.Folder
		if err := decode(c, &p); err != nil {
			return err
		}
		if err := needFolder(); err != nil {
			return err
		}
		if p.Dropped != len(f.Messages) {
			return fmt.Errorf("deleted with %d messages dropped, the model has %d", p.Dropped, len(f.Messages))
		}
		delete(m, c.Folder)
	case changes.FolderReset:
		var p changes.Folder
		if err := decode(c, &p); err != nil {
			return err
		}
		if err := needFolder(); err != nil {
			return err
		}
		if p.OldUIDValidity != f.UIDValidity || p.Dropped != len(f.Messages) {
			return fmt.Errorf("reset from UIDVALIDITY %d dropping %d, the model has %d and %d messages",
				p.OldUIDValidity, p.Dropped, f.UIDValidity, len(f.Messages))
		}
		m[c.Folder] = &Folder{UIDValidity: p.UIDValidity, Messages: map[uint32][]string{}}
	case changes.MessageCreated:
		var p changes.Message
		if err := decode(c, &p); err != nil {
			return err
		}
		if err := needFolder(); err != nil {
			return err
		}
		if _, ok := f.Messages[c.UID]; ok {
			return fmt.Errorf("uid %d created twice", c.UID)
		}
		if p.UIDValidity != f.UIDValidity {
			return fmt.Errorf("created under UIDVALIDITY %d, the folder has %d", p.UIDValidity, f.UIDValidity)
		}
		f.Messages[c.UID] = sorted(p.Flags)
	case changes.MessageUpdated:
		var p changes.FlagUpdate
		if err := decode(c, &p); err != nil {
			return err
		}
		if err := needFolder(); err != nil {
			return err
		}
		old, ok := f.Messages[c.UID]
		switch {
		case !ok:
			return fmt.Errorf("uid %d updated, but it is not in the model", c.UID)
		case !slices.Equal(old, sorted(p.OldFlags)):
			return fmt.Errorf("old flags %v, the model has %v", p.OldFlags, old)
		case slices.Equal(old, sorted(p.Flags)):
			return fmt.Errorf("an update that changes nothing (%v)", old)
		}
		f.Messages[c.UID] = sorted(p.Flags)
	case changes.MessageDeleted:
		if err := needFolder(); err != nil {
			return err
		}
		if _, ok := f.Messages[c.UID]; !ok {
			return fmt.Errorf("uid %d deleted, but it is not in the model", c.UID)
		}
		delete(f.Messages, c.UID)
	case changes.SyncSucceeded, changes.SyncFailed:
		var p changes.Sync
		if err := decode(c, &p); err != nil {
			return err
		}
		if p.TaskID == "" || p.TaskID != c.TaskID {
			return fmt.Errorf("payload names task %q", p.TaskID)
		}
		if ended[p.TaskID] {
			return fmt.Errorf("task %s ended twice", p.TaskID)
		}
		if (c.Kind == changes.SyncSucceeded) != (p.State == "succeeded") {
			return fmt.Errorf("%s with state %q", c.Kind, p.State)
		}
		ended[p.TaskID] = true
	default:
		return fmt.Errorf("unknown kind")
	}
	return nil
}

func decode(c changes.Change, v any) error {
	if err := json.Unmarshal(c.Data, v); err != nil {
		return fmt.Errorf("payload %s: %w", c.Data, err)
	}
	return nil
}

func sorted(flags []string) []string {
	out := slices.Clone(flags)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Store is what Check reads.
type Store interface {
	Changes(ctx context.Context, accountID, after int64, limit int) ([]changes.Change, error)
	Folders(ctx context.Context, accountID int64) ([]store.Folder, error)
	FolderUIDs(ctx context.Context, folderID int64) ([]store.FlagChange, error)
}

// ReadAll reads the account's whole change log, from its first change.
func ReadAll(ctx context.Context, s Store, accountID int64) ([]changes.Change, error) {
	var all []changes.Change
	for {
		page, err := s.Changes(ctx, accountID, int64(len(all)), 1000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return all, nil
		}
		all = append(all, page...)
	}
}

// StoreModel reads what the store holds of the account in the model's shape.
func StoreModel(ctx context.Context, s Store, accountID int64) (Model, error) {
	folders, err := s.Folders(ctx, accountID)
	if err != nil {
		return nil, err
	}
	m := Model{}
	for _, f := range folders {
		uids, err := s.FolderUIDs(ctx, f.ID)
		if err != nil {
			return nil, err
		}
		mf := &Folder{UIDValidity: f.UIDValidity, Messages: make(map[uint32][]string, len(uids))}
		for _, u := range uids {
			mf.Messages[u.UID] = sorted(u.Flags)
		}
		m[f.Name] = mf
	}
	return m, nil
}

// Diff describes how got differs from want ("" when they are equal).
func Diff(want, got Model) string {
	var lines []string
	for name, w := range want {
		g := got[name]
		if g == nil {
			lines = append(lines, fmt.Sprintf("folder %q: in the store, not in the replayed log", name))
			continue
		}
		if w.UIDValidity != g.UIDValidity {
			lines = append(lines, fmt.Sprintf("folder %q: UIDVALIDITY %d in the store, %d replayed", name, w.UIDValidity, g.UIDValidity))
		}
		for uid, flags := range w.Messages {
			gf, ok := g.Messages[uid]
			switch {
			case !ok:
				lines = append(lines, fmt.Sprintf("folder %q uid %d: in the store, not replayed (a missing change)", name, uid))
			case !slices.Equal(flags, gf):
				lines = append(lines, fmt.Sprintf("folder %q uid %d: flags %v in the store, %v replayed", name, uid, flags, gf))
			}
		}
		for uid := range g.Messages {
			if _, ok := w.Messages[uid]; !ok {
				lines = append(lines, fmt.Sprintf("folder %q uid %d: replayed, not in the store (an extra change)", name, uid))
			}
		}
	}
	for name := range got {
		if want[name] == nil {
			lines = append(lines, fmt.Sprintf("folder %q: replayed, not in the store", name))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Check replays the account's whole change log and fails tb unless the log applies change by
// change and its replay equals the store's folders, UIDs and flags. It returns the log.
func Check(tb testing.TB, s Store, accountID int64, tampered ...Tampered) []changes.Change {
	tb.Helper()
	ctx := context.Background()
	log, err := ReadAll(ctx, s, accountID)
	if err != nil {
		tb.Fatalf("changestest: read the change log: %v", err)
	}
	replayed, err := Replay(log, tampered...)
	if err != nil {
		tb.Fatalf("changestest: replay of account %d's change log: %v", accountID, err)
	}
	stored, err := StoreModel(ctx, s, accountID)
	if err != nil {
		tb.Fatalf("changestest: read the store: %v", err)
	}
	if d := Diff(stored, replayed); d != "" {
		tb.Fatalf("changestest: the replayed change log of account %d (%d changes) differs from the store:\n%s", accountID, len(log), d)
	}
	return log
}
