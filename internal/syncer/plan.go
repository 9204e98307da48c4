package syncer

import (
	"mailsync/internal/imapconn"
	"mailsync/internal/store"
)

// syncPlan is everything syncFolder decides about one folder before it does any of it: which
// round trips to make and what their answers mean. It is a value computed by decide, a pure
// function, so that every combination of server answer, checkpoint, capabilities and force_full
// is a row of a table test rather than a path through I/O code; the steps in folder.go only
// execute it.
type syncPlan struct {
	// Skip: STATUS alone shows the folder unchanged since the checkpoint; it is not even
	// selected.
	Skip bool
	// Select: the plan is not complete until the folder is selected (decide was given no SELECT
	// answer yet).
	Select bool

	// Reset: another folder now has this name (UIDVALIDITY or MAILBOXID changed), so every
	// stored message of it is dropped with the first batch written.
	Reset bool
	// Existing: the checkpoint describes the folder selected; what the store holds below From is
	// kept and only compared.
	Existing bool
	// From is the first UID the store does not hold: the checkpoint's UIDNEXT, or 1.
	From uint32
	// MailboxID is the id the checkpoint will carry: the one SELECT reported, or the stored one
	// when this SELECT reported none.
	MailboxID string
	// FetchNew: the server may hold UIDs from From on (its UIDNEXT is above From, or unknown).
	FetchNew bool
	// Verify (force_full on a kept folder): fetch the summaries of every UID below From and
	// compare them with the store's, which also lists the server's UIDs there.
	Verify bool
	// Flags is how the flags of the messages below From are refreshed.
	Flags flagScan
	// Since is the CHANGEDSINCE modseq when Flags is flagsChangedSince.
	Since uint64
	// Deletions is how the UIDs expunged from below From are found.
	Deletions deletionSource
	// HighestModSeq is what the final checkpoint records: 0 unless the server does CONDSTORE
	// and reported one, so that a server that stops doing so gets full flag scans again.
	HighestModSeq uint64
}

// flagScan is how a kept folder's stored flags are brought up to date.
type flagScan int

const (
	flagsNone         flagScan = iota // not needed: nothing stored, modseq unchanged, or Verify compares them
	flagsFull                         // UID FETCH 1:From-1 FLAGS: no usable modseq
	flagsChangedSince                 // UID FETCH 1:From-1 FLAGS (CHANGEDSINCE Since)
)

// deletionSource says which answer lists the server's UIDs below From, for the deletions.
type deletionSource int

const (
	deletionsNone       deletionSource = iota // nothing stored of this folder: nothing to delete
	deletionsFromVerify                       // force_full's summaries list every UID
	deletionsFromFlags                        // a full FLAGS scan answers for every UID below From
	// deletionsBySearch: UID SEARCH ALL, only when the counts say something was expunged
	// (stored below From plus fetched differs from the server's EXISTS).
	deletionsBySearch
)

// decide plans the sync of one folder from its STATUS (from the listing), the SELECT answer (nil
// before the folder is selected), its checkpoint (nil for a folder new to the store), the
// server's capabilities and force_full. Called without a SELECT answer it says only whether to
// skip the folder or select it; with one, it says everything else.
func decide(st imapconn.Status, sel *imapconn.Status, cp *store.Folder, caps imapconn.Caps, force bool) syncPlan {
	if sel == nil {
		if !force && unchanged(st, cp, caps.ObjectID) {
			return syncPlan{Skip: true}
		}
		return syncPlan{Select: true}
	}
	p := syncPlan{From: 1, MailboxID: sel.MailboxID}
	condstore := caps.CondStore && sel.HighestModSeq != 0
	if condstore {
		p.HighestModSeq = sel.HighestModSeq
	}
	p.Reset = cp != nil && !sameFolder(cp, *sel)
	p.Existing = cp != nil && !p.Reset
	if p.Existing {
		p.From = max(cp.UIDNext, 1)
		if p.MailboxID == "" {
			p.MailboxID = cp.MailboxID // not seen this time: keep what is known
		}
	}
	p.FetchNew = sel.UIDNext == 0 || sel.UIDNext > p.From
	if !p.Existing {
		return p
	}
	p.Deletions = deletionsBySearch
	switch {
	case force:
		p.Verify, p.Deletions = true, deletionsFromVerify
	case p.From <= 1:
		// Nothing below the checkpoint: no flags to refresh.
	case !condstore || cp.HighestModSeq == 0:
		p.Flags, p.Deletions = flagsFull, deletionsFromFlags
	case sel.HighestModSeq != cp.HighestModSeq:
		p.Flags, p.Since = flagsChangedSince, cp.HighestModSeq
	}
	return p
}

// renamedFrom returns the stored folder that the folder selected under its name (cp: what the
// store holds under that name, nil for nothing) really is, when the server names folders by RFC
// 8474 MAILBOXID: one gone from the server under its stored name, with the same MAILBOXID and
// UIDVALIDITY. The syncer then renames that folder in the store, messages and all, instead of
// deleting it and downloading its messages again. It returns nil when the selected folder is the
// one stored under its name, when the server gave no MAILBOXID, or when nothing gone matches;
// without MAILBOXID a rename stays a deletion and a new folder (UIDVALIDITY alone names no folder:
// Cyrus gives folders created in the same second the same one).
func renamedFrom(sel imapconn.Status, cp *store.Folder, gone map[string]*store.Folder) *store.Folder {
	if sel.MailboxID == "" || (cp != nil && sameFolder(cp, sel)) {
		return nil
	}
	src := gone[sel.MailboxID]
	if src == nil || src.UIDValidity != sel.UIDValidity {
		return nil
	}
	return src
}
