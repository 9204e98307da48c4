package syncer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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

// syncFolder brings one folder of the store up to date with the server: decide plans it, from
// the STATUS, the SELECT answer and the checkpoint, and the steps below carry the plan out.
func (a *accountSync) syncFolder(ctx context.Context, fp folderPlan) error {
	name, cp := fp.server.Name, fp.stored
	force := a.run.Task.ForceFull
	caps := a.conn.Caps()
	if decide(fp.server.Status, nil, cp, caps, force).Skip {
		return nil
	}
	a.phase("fetching " + name)
	sel, ok, err := a.selectFolder(ctx, fp)
	if err != nil || !ok {
		return err
	}
	if src := renamedFrom(sel, cp, a.gone); src != nil {
		began := time.Now()
		if err := a.s.store.RenameFolder(ctx, a.run.Lease(), a.p, a.acct.ID, src.Name, name); err != nil {
			return a.storeFailed(ctx, err)
		}
		a.run.Beat(began)
		delete(a.gone, src.MailboxID)
		a.log.Info("folder renamed on the server: renamed in the store, messages kept", "from", src.Name, "to", name,
			"mailboxid", sel.MailboxID)
		renamed := *src
		renamed.Name = name
		cp = &renamed
	}
	plan := decide(fp.server.Status, &sel, cp, caps, force)
	if plan.Reset {
		a.log.Info("folder reset: another folder under this name (UIDVALIDITY or MAILBOXID changed)", "folder", name,
			"was", cp.UIDValidity, "now", sel.UIDValidity, "mailboxid_was", cp.MailboxID, "mailboxid_now", sel.MailboxID)
		if fp.expected < int(sel.Messages) {
			// STATUS made it look like the same folder: the whole folder is new after all.
			a.p.MessagesTotal += int(sel.Messages) - fp.expected
			fp.expected = int(sel.Messages)
		}
	}
	cur := &cursor{folder: a.startCheckpoint(fp, cp, sel, plan), reset: plan.Reset}

	// known is what the store holds of the folder below From, with flags; under Verify the
	// store's sizes and dates come too, to be checked against the server's.
	var (
		known  []store.FlagChange
		stored []store.StoredSummary
	)
	if plan.Existing {
		if known, stored, err = a.loadKnown(ctx, cp.ID, plan.Verify); err != nil {
			return err
		}
	}

	// Bodies to fetch: everything from From on, and under Verify whatever the store lacks below
	// it or holds differently from the server.
	var (
		serverUIDs []uint32           // every UID below From on the server, once listed
		flags      []store.FlagChange // the flag changes to write
	)
	fetchSet := imapconn.UIDsFrom(plan.From)
	if plan.Existing && plan.FetchNew {
		// Messages an action moved in are stored above the checkpoint already, from COPYUID:
		// they are not downloaded again.
		movedIn, err := a.s.store.StoredUIDsFrom(ctx, cp.ID, plan.From)
		if err != nil {
			return a.storeFailed(ctx, err)
		}
		fetchSet = fromExcept(plan.From, movedIn)
	}
	if plan.Verify {
		v, err := a.verifyFolder(ctx, name, plan.From, stored)
		if err != nil {
			return err
		}
		serverUIDs, flags = v.server, v.flags
		if fix := len(v.missing) + len(v.differ); fix > 0 {
			fetchSet = append(imapconn.UIDs(append(v.missing, v.differ...)...), fetchSet...)
			a.p.MessagesTotal += fix
			fp.expected += fix
		}
		a.p.Phase = "fetching " + name
	}
	fetched := 0
	if plan.FetchNew || len(fetchSet) > 1 {
		if fetched, err = a.fetchAll(ctx, name, fetchSet, cur, sel); err != nil {
			return err
		}
	}
	if fetched < fp.expected {
		// Messages STATUS counted that were gone before we could fetch them: handled all the same.
		a.p.MessagesDone += fp.expected - fetched
	}

	if plan.Flags != flagsNone {
		updates, err := a.scanFlags(ctx, name, plan)
		if err != nil {
			return err
		}
		flags = flagChanges(known, updates)
		if plan.Deletions == deletionsFromFlags {
			serverUIDs = sortedUIDs(updates)
		}
	}
	var deleted []uint32
	listed := plan.Deletions == deletionsFromVerify || plan.Deletions == deletionsFromFlags
	// Every message on the server below From is stored, and everything above it was just
	// fetched: the counts match unless something was expunged.
	if plan.Deletions == deletionsBySearch && len(known)+fetched != int(sel.Messages) {
		a.phase("deletions " + name)
		all, err := a.serverUIDs(ctx, name)
		if err != nil {
			return err
		}
		serverUIDs, listed = below(all, plan.From), true
	}
	if listed {
		deleted = minusKnown(known, serverUIDs)
	}

	final := cur.folder
	final.UIDNext = max(cur.folder.UIDNext, sel.UIDNext)
	final.Messages = int(sel.Messages)
	final.HighestModSeq = plan.HighestModSeq
	batch := store.Batch{Folder: final, Reset: cur.reset, Flags: flags, Deleted: deleted}
	if !batch.Reset && len(batch.Flags) == 0 && len(batch.Deleted) == 0 && plan.Existing && sameCheckpoint(*cp, final) {
		return nil // nothing to write: a selected but unchanged folder costs no transaction
	}
	return a.commitFinal(ctx, batch)
}

// cursor is where the writing of one folder stands: the checkpoint the next batch carries, and
// whether that batch must still drop what the store held under the folder's name. Every batch
// written advances it.
type cursor struct {
	folder store.Folder
	reset  bool
}

// phase reports what the run is doing now.
func (a *accountSync) phase(p string) {
	a.p.Phase = p
	a.run.Report(a.p)
}

// selectFolder selects the folder. A folder the server refuses (NO or BAD on a living connection)
// is one folder's problem, not the account's: it is skipped and said, and ok is false.
func (a *accountSync) selectFolder(ctx context.Context, fp folderPlan) (sel imapconn.Status, ok bool, err error) {
	name := fp.server.Name
	sel, err = a.conn.Select(ctx, name, a.conn.Caps().CondStore)
	if err == nil {
		return sel, true, nil
	}
	if ctx.Err() == nil && imapconn.Classify(err) == imapconn.ClassPermanent {
		a.log.Warn("folder skipped: cannot select it", "folder", name, "err", err)
		a.skipped = append(a.skipped, fmt.Sprintf("%q: %v", name, err))
		a.p.MessagesDone += fp.expected
		return sel, false, nil
	}
	return sel, false, a.fail(ctx, name, err)
}

// startCheckpoint is the checkpoint the folder's first batch carries: the stored one for a kept
// folder, a fresh one (UIDNEXT 1) for a new or reset one.
func (a *accountSync) startCheckpoint(fp folderPlan, cp *store.Folder, sel imapconn.Status, plan syncPlan) store.Folder {
	f := store.Folder{
		AccountID: a.acct.ID, Name: fp.server.Name, Attributes: fp.server.Attributes,
		UIDValidity: sel.UIDValidity, UIDNext: plan.From, MailboxID: plan.MailboxID,
	}
	if d := fp.server.Delimiter; d != 0 {
		f.Delimiter = string(d)
	}
	if plan.Existing {
		f.HighestModSeq, f.Messages = cp.HighestModSeq, cp.Messages
	}
	return f
}

// loadKnown reads what the store holds of a folder: its UIDs with flags, and with summaries too
// when they are to be verified.
func (a *accountSync) loadKnown(ctx context.Context, folderID int64, summaries bool) ([]store.FlagChange, []store.StoredSummary, error) {
	if !summaries {
		known, err := a.s.store.FolderUIDs(ctx, folderID)
		if err != nil {
			return nil, nil, a.storeFailed(ctx, err)
		}
		return known, nil, nil
	}
	stored, err := a.s.store.FolderSummaries(ctx, folderID)
	if err != nil {
		return nil, nil, a.storeFailed(ctx, err)
	}
	known := make([]store.FlagChange, len(stored))
	for i, m := range stored {
		known[i] = store.FlagChange{UID: m.UID, Flags: m.Flags}
	}
	return known, stored, nil
}

// verifyFolder (force_full) fetches the summaries of every UID below from and compares them with
// the stored ones.
func (a *accountSync) verifyFolder(ctx context.Context, name string, from uint32, stored []store.StoredSummary) (verification, error) {
	a.phase("verifying " + name)
	var summaries []imapconn.Summary
	if from > 1 {
		var err error
		if summaries, err = a.conn.FetchSummaries(ctx, imapconn.UIDSet{{Start: 1, Stop: from - 1}}); err != nil {
			return verification{}, a.fail(ctx, name, err)
		}
	}
	v := verify(stored, summaries)
	if len(v.missing)+len(v.differ) > 0 {
		a.log.Info("force_full: downloading messages missing from the store or stored differently",
			"folder", name, "missing", len(v.missing), "differ", len(v.differ))
	}
	return v, nil
}

// scanFlags fetches the flags of the messages below the plan's From: all of them, or those
// changed since its modseq.
func (a *accountSync) scanFlags(ctx context.Context, name string, plan syncPlan) ([]imapconn.FlagUpdate, error) {
	a.phase("flags " + name)
	var since uint64
	if plan.Flags == flagsChangedSince {
		since = plan.Since
	}
	updates, err := a.conn.FetchFlags(ctx, imapconn.UIDSet{{Start: 1, Stop: plan.From - 1}}, since)
	if err != nil {
		return nil, a.fail(ctx, name, err)
	}
	return updates, nil
}

// serverUIDs lists every UID of the selected folder (UID SEARCH ALL), ascending: the one place
// the syncer asks for it, to find deletions or where a broken fetch stopped.
func (a *accountSync) serverUIDs(ctx context.Context, name string) ([]uint32, error) {
	all, err := a.conn.SearchAllUIDs(ctx)
	if err != nil {
		return nil, a.fail(ctx, name, err)
	}
	return all, nil
}

// commitFinal writes the folder's last batch: its final checkpoint, flag changes and deletions.
func (a *accountSync) commitFinal(ctx context.Context, batch store.Batch) error {
	p := a.p
	p.Updated += len(batch.Flags)
	p.Deleted += len(batch.Deleted)
	began := time.Now()
	if _, err := a.s.store.CommitBatch(ctx, a.run.Lease(), p, batch); err != nil {
		return a.storeFailed(ctx, err)
	}
	a.p = p
	a.run.Report(a.p)
	a.run.Beat(began)
	return nil
}

// sortedUIDs returns the UIDs of updates, ascending.
func sortedUIDs(updates []imapconn.FlagUpdate) []uint32 {
	uids := make([]uint32, len(updates))
	for i, u := range updates {
		uids[i] = u.UID
	}
	slices.Sort(uids)
	return uids
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

// fromExcept is the set from:* without the UIDs of skip (sorted, all >= from).
func fromExcept(from uint32, skip []uint32) imapconn.UIDSet {
	var set imapconn.UIDSet
	next := from
	for _, uid := range skip {
		if uid < next {
			continue
		}
		if uid > next {
			set = append(set, imapconn.UIDRange{Start: next, Stop: uid - 1})
		}
		next = uid + 1
	}
	return append(set, imapconn.UIDRange{Start: next, Stop: 0})
}
