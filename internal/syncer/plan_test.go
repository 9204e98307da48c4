package syncer

import (
	"testing"

	"mailsync/internal/imapconn"
	"mailsync/internal/store"
)

// TestDecide is every case of the folder plan: skipping on STATUS, a reset on UIDVALIDITY or
// MAILBOXID, the flag scan (none, full, CHANGEDSINCE), where the deletions come from, and
// force_full's verification.
func TestDecide(t *testing.T) {
	condstore := imapconn.Caps{CondStore: true}
	objectID := imapconn.Caps{CondStore: true, ObjectID: true}
	plain := imapconn.Caps{}
	// cp is a checkpoint of 4 messages, UIDs below 5, modseq 9 (0: none recorded).
	cp := func(modseq uint64, id string) *store.Folder {
		return &store.Folder{UIDValidity: 7, UIDNext: 5, Messages: 4, HighestModSeq: modseq, MailboxID: id}
	}
	status := func(uidnext, msgs uint32, modseq uint64) imapconn.Status {
		return imapconn.Status{UIDValidity: 7, UIDNext: uidnext, Messages: msgs, HighestModSeq: modseq}
	}
	sel := func(uv, uidnext uint32, modseq uint64, id string) *imapconn.Status {
		return &imapconn.Status{UIDValidity: uv, UIDNext: uidnext, Messages: 4, HighestModSeq: modseq, MailboxID: id}
	}
	for _, tc := range []struct {
		name  string
		st    imapconn.Status
		sel   *imapconn.Status
		cp    *store.Folder
		caps  imapconn.Caps
		force bool
		want  syncPlan
	}{
		// Before SELECT.
		{name: "STATUS equal to the checkpoint: skipped", st: status(5, 4, 9), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Skip: true}},
		{name: "equal, but force_full: selected", st: status(5, 4, 9), cp: cp(9, ""), caps: condstore, force: true,
			want: syncPlan{Select: true}},
		{name: "equal, but OBJECTID (STATUS has no MAILBOXID): selected", st: status(5, 4, 9), cp: cp(9, ""), caps: objectID,
			want: syncPlan{Select: true}},
		{name: "equal, but no HIGHESTMODSEQ: flags may have changed, selected", st: status(5, 4, 0), cp: cp(0, ""), caps: plain,
			want: syncPlan{Select: true}},
		{name: "new mail: selected", st: status(6, 5, 10), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Select: true}},
		{name: "folder new to the store: selected", st: status(5, 4, 9), caps: condstore,
			want: syncPlan{Select: true}},

		// After SELECT.
		{name: "new folder: fetch everything", sel: sel(7, 5, 9, "a1"), caps: condstore,
			want: syncPlan{From: 1, MailboxID: "a1", FetchNew: true, HighestModSeq: 9}},
		{name: "new folder, UIDNEXT unknown: fetch everything", sel: sel(7, 0, 0, ""), caps: plain,
			want: syncPlan{From: 1, FetchNew: true}},
		{name: "UIDVALIDITY changed: reset, fetch everything", sel: sel(8, 5, 9, ""), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Reset: true, From: 1, FetchNew: true, HighestModSeq: 9}},
		{name: "MAILBOXID changed, same UIDVALIDITY: reset", sel: sel(7, 5, 9, "b2"), cp: cp(9, "a1"), caps: objectID,
			want: syncPlan{Reset: true, From: 1, MailboxID: "b2", FetchNew: true, HighestModSeq: 9}},
		{name: "modseq unchanged, nothing new: only the count check", sel: sel(7, 5, 9, ""), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Existing: true, From: 5, Deletions: deletionsBySearch, HighestModSeq: 9}},
		{name: "modseq moved: CHANGEDSINCE, deletions by the count check", sel: sel(7, 5, 12, ""), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Existing: true, From: 5, Flags: flagsChangedSince, Since: 9, Deletions: deletionsBySearch, HighestModSeq: 12}},
		{name: "new mail and modseq moved: fetch from the checkpoint and CHANGEDSINCE", sel: sel(7, 8, 12, ""), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Existing: true, From: 5, FetchNew: true, Flags: flagsChangedSince, Since: 9, Deletions: deletionsBySearch, HighestModSeq: 12}},
		{name: "no CONDSTORE: full flag scan, which lists the UIDs", sel: sel(7, 5, 0, ""), cp: cp(0, ""), caps: plain,
			want: syncPlan{Existing: true, From: 5, Flags: flagsFull, Deletions: deletionsFromFlags}},
		{name: "CONDSTORE advertised but no HIGHESTMODSEQ in SELECT: full scan", sel: sel(7, 5, 0, ""), cp: cp(9, ""), caps: condstore,
			want: syncPlan{Existing: true, From: 5, Flags: flagsFull, Deletions: deletionsFromFlags}},
		{name: "checkpoint without modseq (server gained CONDSTORE): full scan", sel: sel(7, 5, 9, ""), cp: cp(0, ""), caps: condstore,
			want: syncPlan{Existing: true, From: 5, Flags: flagsFull, Deletions: deletionsFromFlags, HighestModSeq: 9}},
		{name: "modseq reported without the CONDSTORE capability: not trusted", sel: sel(7, 5, 9, ""), cp: cp(9, ""), caps: plain,
			want: syncPlan{Existing: true, From: 5, Flags: flagsFull, Deletions: deletionsFromFlags}},
		{name: "checkpoint at UID 1: nothing below it to scan", sel: sel(7, 3, 0, ""),
			cp: &store.Folder{UIDValidity: 7, UIDNext: 1}, caps: plain,
			want: syncPlan{Existing: true, From: 1, FetchNew: true, Deletions: deletionsBySearch}},
		{name: "checkpoint UIDNEXT 0 counts as 1", sel: sel(7, 3, 0, ""),
			cp: &store.Folder{UIDValidity: 7}, caps: plain,
			want: syncPlan{Existing: true, From: 1, FetchNew: true, Deletions: deletionsBySearch}},
		{name: "MAILBOXID not reported this time: the stored one is kept", sel: sel(7, 5, 9, ""), cp: cp(9, "a1"), caps: condstore,
			want: syncPlan{Existing: true, From: 5, MailboxID: "a1", Deletions: deletionsBySearch, HighestModSeq: 9}},
		{name: "MAILBOXID first seen: recorded, no reset", sel: sel(7, 5, 9, "a1"), cp: cp(9, ""), caps: objectID,
			want: syncPlan{Existing: true, From: 5, MailboxID: "a1", Deletions: deletionsBySearch, HighestModSeq: 9}},
		{name: "force_full: verify, which lists the UIDs and compares flags", sel: sel(7, 5, 9, ""), cp: cp(9, ""), caps: condstore, force: true,
			want: syncPlan{Existing: true, From: 5, Verify: true, Deletions: deletionsFromVerify, HighestModSeq: 9}},
		{name: "force_full without CONDSTORE: verify, no flag scan", sel: sel(7, 8, 0, ""), cp: cp(0, ""), caps: plain, force: true,
			want: syncPlan{Existing: true, From: 5, FetchNew: true, Verify: true, Deletions: deletionsFromVerify}},
		{name: "force_full on a reset folder: nothing to verify", sel: sel(8, 5, 9, ""), cp: cp(9, ""), caps: condstore, force: true,
			want: syncPlan{Reset: true, From: 1, FetchNew: true, HighestModSeq: 9}},
		{name: "force_full on a new folder: fetch everything", sel: sel(7, 5, 0, ""), caps: plain, force: true,
			want: syncPlan{From: 1, FetchNew: true}},
	} {
		if got := decide(tc.st, tc.sel, tc.cp, tc.caps, tc.force); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestRenamedFrom is every case of telling a rename from a deletion and a new folder: only a
// folder gone from the server, with the MAILBOXID and UIDVALIDITY of the one selected, is it.
func TestRenamedFrom(t *testing.T) {
	gone := map[string]*store.Folder{
		"a1": {Name: "Old", UIDValidity: 7, MailboxID: "a1"},
		"b2": {Name: "Other", UIDValidity: 9, MailboxID: "b2"},
	}
	sel := func(uv uint32, id string) imapconn.Status { return imapconn.Status{UIDValidity: uv, MailboxID: id} }
	for _, tc := range []struct {
		name string
		sel  imapconn.Status
		cp   *store.Folder
		want string // the name of the folder renamed from, "" for none
	}{
		{name: "new name, same id and UIDVALIDITY as a gone folder: renamed", sel: sel(7, "a1"), want: "Old"},
		{name: "same id, other UIDVALIDITY: a new folder (the server reset it)", sel: sel(8, "a1")},
		{name: "an id nothing gone has: a new folder", sel: sel(7, "c3")},
		{name: "no MAILBOXID (no OBJECTID): a new folder", sel: sel(7, "")},
		{name: "the folder stored under this name: no rename", sel: sel(7, "d4"),
			cp: &store.Folder{Name: "Here", UIDValidity: 7, MailboxID: "d4"}},
		{name: "stored under this name without an id, same UIDVALIDITY: the same folder", sel: sel(7, "a1"),
			cp: &store.Folder{Name: "Here", UIDValidity: 7}},
		{name: "another folder stored under this name (deleted, and a gone one renamed onto it): renamed", sel: sel(9, "b2"),
			cp: &store.Folder{Name: "Here", UIDValidity: 9, MailboxID: "d4"}, want: "Other"},
		{name: "the name's stored folder reset (UIDVALIDITY), nothing gone matches: no rename", sel: sel(8, "d4"),
			cp: &store.Folder{Name: "Here", UIDValidity: 7, MailboxID: "d4"}},
	} {
		got := renamedFrom(tc.sel, tc.cp, gone)
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != tc.want {
			t.Errorf("%s: renamed from %q, want %q", tc.name, name, tc.want)
		}
	}
}
