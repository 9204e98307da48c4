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
// server that reports HIGHESTMODSEQ can say that no flag changed, and only one without OBJECTID
// can say that the folder is still the same one: STATUS carries no MAILBOXID (see
// imapconn.Status), so on an OBJECTID server every folder is selected, one round trip each.
func unchanged(st imapconn.Status, cp *store.Folder, objectID bool) bool {
	return cp != nil && !objectID && st.UIDValidity != 0 && st.HighestModSeq != 0 &&
		cp.UIDValidity == st.UIDValidity && cp.UIDNext == st.UIDNext &&
		cp.Messages == int(st.Messages) && cp.HighestModSeq == st.HighestModSeq
}

// sameFolder reports whether the folder selected is the one the checkpoint describes: same
// UIDVALIDITY and, where both are known, same MAILBOXID. Cyrus keeps UIDVALIDITY across RENAME
// and gives folders created in the same second the same one, so after "delete A, rename B to A"
// only the id tells that A's UIDs now name B's messages.
func sameFolder(cp *store.Folder, sel imapconn.Status) bool {
	return cp.UIDValidity == sel.UIDValidity &&
		(cp.MailboxID == "" || sel.MailboxID == "" || cp.MailboxID == sel.MailboxID)
}

// syncFolder brings one folder of the store up to date with the server.
func (a *accountSync) syncFolder(ctx context.Context, plan folderPlan) error {
	name, cp := plan.server.Name, plan.stored
	force := a.run.Task.ForceFull
	caps := a.conn.Caps()
	if !force && unchanged(plan.server.Status, cp, caps.ObjectID) {
		return nil
	}
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
	reset := cp != nil && !sameFolder(cp, sel)
	if reset {
		a.log.Info("folder reset: another folder under this name (UIDVALIDITY or MAILBOXID changed)", "folder", name,
			"was", cp.UIDValidity, "now", sel.UIDValidity, "mailboxid_was", cp.MailboxID, "mailboxid_now", sel.MailboxID)
	}
	existing := cp != nil && !reset
	if reset && plan.expected < int(sel.Messages) {
		// STATUS made it look like the same folder: the whole folder is new after all.
		a.p.MessagesTotal += int(sel.Messages) - plan.expected
		plan.expected = int(sel.Messages)
	}

	checkpoint := store.Folder{
		AccountID: a.acct.ID, Name: name, Attributes: plan.server.Attributes,
		UIDValidity: sel.UIDValidity, UIDNext: 1, MailboxID: sel.MailboxID,
	}
	if checkpoint.MailboxID == "" && existing {
		checkpoint.MailboxID = cp.MailboxID // not seen this time: keep what is known
	}
	if d := plan.server.Delimiter; d != 0 {
		checkpoint.Delimiter = string(d)
	}
	// known is what the store holds of the folder: UIDs below the checkpoint, with flags. Under
	// force_full the store's sizes and dates come too, to be checked against the server's.
	var (
		known  []store.FlagChange
		stored []store.StoredSummary
	)
	if existing {
		checkpoint.UIDNext, checkpoint.HighestModSeq, checkpoint.Messages = max(cp.UIDNext, 1), cp.HighestModSeq, cp.Messages
		if force {
			stored, err = a.s.store.FolderSummaries(ctx, cp.ID)
			known = make([]store.FlagChange, len(stored))
			for i, m := range stored {
				known[i] = store.FlagChange{UID: m.UID, Flags: m.Flags}
			}
		} else {
			known, err = a.s.store.FolderUIDs(ctx, cp.ID)
		}
		if err != nil {
			return a.storeFailed(ctx, err)
		}
	}
	oldNext := checkpoint.UIDNext

	// Bodies to fetch: everything from the checkpoint on, and under force_full whatever the store
	// lacks below it or holds differently from the server.
	var (
		serverUIDs []uint32 // every UID below oldNext on the server, once known
		listed     bool
		verified   []store.FlagChange // under force_full: the flag changes the verification found
	)
	fetchSet := imapconn.UIDsFrom(oldNext)
	if force && existing {
		a.p.Phase = "verifying " + name
		a.run.Report(a.p)
		var summaries []imapconn.Summary
		if oldNext > 1 {
			if summaries, err = a.conn.FetchSummaries(ctx, imapconn.UIDSet{{Start: 1, Stop: oldNext - 1}}); err != nil {
				return a.fail(ctx, name, err)
			}
		}
		v := verify(stored, summaries)
		serverUIDs, listed, verified = v.server, true, v.flags
		if len(v.missing)+len(v.differ) > 0 {
			a.log.Info("force_full: downloading messages missing from the store or stored differently",
				"folder", name, "missing", len(v.missing), "differ", len(v.differ))
			fetchSet = append(imapconn.UIDs(append(v.missing, v.differ...)...), fetchSet...)
			a.p.MessagesTotal += len(v.missing) + len(v.differ)
			plan.expected += len(v.missing) + len(v.differ)
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

	batch.Flags = verified
	if existing && oldNext > 1 && !force {
		old := imapconn.UIDSet{{Start: 1, Stop: oldNext - 1}}
		full := !condstore || cp.HighestModSeq == 0
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
	return a.UIDValidity == b.UIDValidity && a.MailboxID == b.MailboxID && a.UIDNext == b.UIDNext && a.HighestModSeq == b.HighestModSeq &&
		a.Messages == b.Messages && a.Delimiter == b.Delimiter && slices.Equal(a.Attributes, b.Attributes)
}

// verification is what force_full found by comparing the store with the server below the
// checkpoint.
type verification struct {
	server  []uint32           // every UID the server has there, ascending
	missing []uint32           // on the server, not in the store
	differ  []uint32           // in both, but not the same message: a different size or date
	flags   []store.FlagChange // same message, different flags
}

// verify compares the stored summaries with the server's (both ascending by UID). A message whose
// RFC822.SIZE or INTERNALDATE differs from the stored one, or whose stored bytes are not as long
// as the server says, is another message (or a damaged copy) under the same UID: it is fetched
// again, which overwrites the row.
func verify(stored []store.StoredSummary, server []imapconn.Summary) verification {
	var v verification
	have := make(map[uint32]*store.StoredSummary, len(stored))
	for i := range stored {
		have[stored[i].UID] = &stored[i]
	}
	v.server = make([]uint32, len(server))
	for i, sm := range server {
		v.server[i] = sm.UID
		st, ok := have[sm.UID]
		switch {
		case !ok:
			v.missing = append(v.missing, sm.UID)
		case st.Size != sm.Size || st.RawSize != sm.Size || st.InternalDate.Unix() != sm.InternalDate.Unix():
			v.differ = append(v.differ, sm.UID)
		case !sameFlags(st.Flags, sm.Flags):
			v.flags = append(v.flags, store.FlagChange{UID: sm.UID, Flags: sm.Flags})
		}
	}
	slices.Sort(v.server)
	return v
}

// below returns the UIDs of sorted that are below limit.
func below(sorted []uint32, limit uint32) []uint32 {
	i, _ := slices.BinarySearch(sorted, limit)
	return sorted[:i]
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
