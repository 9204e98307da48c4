package syncer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"mailsync/internal/imapconn"
	"mailsync/internal/store"
)

// unchanged reports whether a folder can be skipped on the strength of its STATUS alone. Only a
// server that reports HIGHESTMODSEQ can say that no flag changed.
func unchanged(st imapconn.Status, cp *store.Folder) bool {
	return cp != nil && st.UIDValidity != 0 && st.HighestModSeq != 0 &&
		cp.UIDValidity == st.UIDValidity && cp.UIDNext == st.UIDNext &&
		cp.Messages == int(st.Messages) && cp.HighestModSeq == st.HighestModSeq
}

// syncFolder brings one folder of the store up to date with the server.
func (a *accountSync) syncFolder(ctx context.Context, plan folderPlan) error {
	name, cp := plan.server.Name, plan.stored
	force := a.run.Task.ForceFull
	if !force && unchanged(plan.server.Status, cp) {
		return nil
	}
	caps := a.conn.Caps()
	a.p.Phase = "fetching " + name
	a.run.Report(a.p)
	sel, err := a.conn.Select(ctx, name, caps.CondStore)
	if err != nil {
		if ctx.Err() == nil && imapconn.Classify(err) == imapconn.ClassPermanent {
			// The server refused this folder (NO or BAD) but the connection lives: one folder's
			// problem, not the account's.
			a.log.Warn("folder skipped: cannot select it", "folder", name, "err", err)
			a.skipped = append(a.skipped, fmt.Sprintf("%q: %v", name, err))
			a.p.MessagesDone += plan.expected
			return nil
		}
		return a.fail(ctx, name, err)
	}
	condstore := caps.CondStore && sel.HighestModSeq != 0
	reset := cp != nil && cp.UIDValidity != sel.UIDValidity
	if reset {
		a.log.Info("folder reset: UIDVALIDITY changed", "folder", name, "was", cp.UIDValidity, "now", sel.UIDValidity)
	}
	existing := cp != nil && !reset

	checkpoint := store.Folder{
		AccountID: a.acct.ID, Name: name, Attributes: plan.server.Attributes,
		UIDValidity: sel.UIDValidity, UIDNext: 1,
	}
	if d := plan.server.Delimiter; d != 0 {
		checkpoint.Delimiter = string(d)
	}
	// known is what the store holds of the folder: UIDs below the checkpoint, with flags.
	var known []store.FlagChange
	if existing {
		checkpoint.UIDNext, checkpoint.HighestModSeq, checkpoint.Messages = max(cp.UIDNext, 1), cp.HighestModSeq, cp.Messages
		if known, err = a.s.store.FolderUIDs(ctx, cp.ID); err != nil {
			return a.storeFailed(ctx, err)
		}
	}
	oldNext := checkpoint.UIDNext

	// Bodies to fetch: everything from the checkpoint on, and under force_full whatever the store
	// lacks below it.
	var (
		serverUIDs []uint32 // every UID below oldNext on the server, once known
		listed     bool
	)
	fetchSet := imapconn.UIDsFrom(oldNext)
	if force && existing {
		a.p.Phase = "deletions " + name
		a.run.Report(a.p)
		all, err := a.conn.SearchAllUIDs(ctx)
		if err != nil {
			return a.fail(ctx, name, err)
		}
		serverUIDs, listed = below(all, oldNext), true
		if missing := minus(serverUIDs, known); len(missing) > 0 {
			a.log.Info("force_full: downloading messages missing from the store", "folder", name, "count", len(missing))
			fetchSet = append(imapconn.UIDs(missing...), fetchSet...)
			a.p.MessagesTotal += len(missing)
			plan.expected += len(missing)
		}
		a.p.Phase = "fetching " + name
	}
	pendingReset := reset
	fetched := 0
	if sel.UIDNext == 0 || sel.UIDNext > oldNext || len(fetchSet) > 1 {
		if fetched, err = a.fetchAll(ctx, name, fetchSet, &checkpoint, &pendingReset, sel); err != nil {
			return err
		}
	}
	if fetched < plan.expected {
		// Messages STATUS counted that were gone before we could fetch them: handled all the same.
		a.p.MessagesDone += plan.expected - fetched
	}

	final := checkpoint
	final.UIDNext = max(checkpoint.UIDNext, sel.UIDNext)
	final.Messages = int(sel.Messages)
	final.HighestModSeq = 0
	if condstore {
		final.HighestModSeq = sel.HighestModSeq
	}
	batch := store.Batch{Folder: final, Reset: pendingReset}

	if existing && oldNext > 1 {
		old := imapconn.UIDSet{{Start: 1, Stop: oldNext - 1}}
		full := force || !condstore || cp.HighestModSeq == 0
		if full || sel.HighestModSeq != cp.HighestModSeq {
			a.p.Phase = "flags " + name
			a.run.Report(a.p)
			var since uint64
			if !full {
				since = cp.HighestModSeq
			}
			updates, err := a.conn.FetchFlags(ctx, old, since)
			if err != nil {
				return a.fail(ctx, name, err)
			}
			batch.Flags = flagChanges(known, updates)
			if full && !listed {
				// A FLAGS scan of 1:N answers for every message below N: it lists them too.
				serverUIDs, listed = make([]uint32, len(updates)), true
				for i, u := range updates {
					serverUIDs[i] = u.UID
				}
				slices.Sort(serverUIDs)
			}
		}
	}
	if existing {
		// Every message on the server below the old checkpoint is stored, and everything above
		// it was just fetched: the counts match unless something was expunged.
		if !listed && len(known)+fetched != int(sel.Messages) {
			a.p.Phase = "deletions " + name
			a.run.Report(a.p)
			all, err := a.conn.SearchAllUIDs(ctx)
			if err != nil {
				return a.fail(ctx, name, err)
			}
			serverUIDs, listed = below(all, oldNext), true
		}
		if listed {
			batch.Deleted = minusKnown(known, serverUIDs)
		}
	}

	if !batch.Reset && len(batch.Flags) == 0 && len(batch.Deleted) == 0 && existing && sameCheckpoint(*cp, final) {
		return nil // nothing to write: a selected but unchanged folder costs no transaction
	}
	p := a.p
	p.Updated += len(batch.Flags)
	p.Deleted += len(batch.Deleted)
	if _, err := a.s.store.CommitBatch(ctx, a.run.Lease(), p, batch); err != nil {
		return a.storeFailed(ctx, err)
	}
	a.p = p
	a.run.Report(a.p)
	a.run.Beat()
	return nil
}

func sameCheckpoint(a, b store.Folder) bool {
	return a.UIDValidity == b.UIDValidity && a.UIDNext == b.UIDNext && a.HighestModSeq == b.HighestModSeq &&
		a.Messages == b.Messages && a.Delimiter == b.Delimiter && slices.Equal(a.Attributes, b.Attributes)
}

// below returns the UIDs of sorted that are below limit.
func below(sorted []uint32, limit uint32) []uint32 {
	i, _ := slices.BinarySearch(sorted, limit)
	return sorted[:i]
}

// minus returns the UIDs of server (sorted) that known lacks.
func minus(server []uint32, known []store.FlagChange) []uint32 {
	have := make(map[uint32]struct{}, len(known))
	for _, k := range known {
		have[k.UID] = struct{}{}
	}
	var out []uint32
	for _, uid := range server {
		if _, ok := have[uid]; !ok {
			out = append(out, uid)
		}
	}
	return out
}

// minusKnown returns the stored UIDs the server (sorted) no longer has.
func minusKnown(known []store.FlagChange, server []uint32) []uint32 {
	var out []uint32
	for _, k := range known {
		if _, ok := slices.BinarySearch(server, k.UID); !ok {
			out = append(out, k.UID)
		}
	}
	return out
}

// flagChanges returns the updates whose flags differ from the stored ones, as sets.
func flagChanges(known []store.FlagChange, updates []imapconn.FlagUpdate) []store.FlagChange {
	stored := make(map[uint32][]string, len(known))
	for _, k := range known {
		stored[k.UID] = k.Flags
	}
	var out []store.FlagChange
	for _, u := range updates {
		old, ok := stored[u.UID]
		if !ok || sameFlags(old, u.Flags) {
			continue // not stored (fetched meanwhile, or expunged) or unchanged
		}
		out = append(out, store.FlagChange{UID: u.UID, Flags: u.Flags})
	}
	return out
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, strings.Compare)
	slices.SortFunc(b, strings.Compare)
	return slices.Equal(a, b)
}
