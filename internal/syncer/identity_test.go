package syncer

import (
	"slices"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/store"
)

func TestSameFolder(t *testing.T) {
	cp := func(uv uint32, id string) *store.Folder { return &store.Folder{UIDValidity: uv, MailboxID: id} }
	sel := func(uv uint32, id string) imapconn.Status { return imapconn.Status{UIDValidity: uv, MailboxID: id} }
	for _, tc := range []struct {
		name string
		cp   *store.Folder
		sel  imapconn.Status
		want bool
	}{
		{"same UIDVALIDITY, no ids (no OBJECTID)", cp(7, ""), sel(7, ""), true},
		{"same UIDVALIDITY and id", cp(7, "a1"), sel(7, "a1"), true},
		{"same UIDVALIDITY, other id (Cyrus: renamed onto a deleted name)", cp(7, "a1"), sel(7, "b2"), false},
		{"other UIDVALIDITY, same id", cp(7, "a1"), sel(8, "a1"), false},
		{"id first seen (checkpoint older than the column)", cp(7, ""), sel(7, "a1"), true},
		{"id not seen this time", cp(7, "a1"), sel(7, ""), true},
	} {
		if got := sameFolder(tc.cp, tc.sel); got != tc.want {
			t.Errorf("%s: sameFolder = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUnchangedNeedsNoObjectID(t *testing.T) {
	st := imapconn.Status{UIDValidity: 7, UIDNext: 5, Messages: 4, HighestModSeq: 9}
	cp := &store.Folder{UIDValidity: 7, UIDNext: 5, Messages: 4, HighestModSeq: 9}
	if !unchanged(st, cp, false) {
		t.Error("an equal checkpoint on a CONDSTORE server without OBJECTID is not skipped")
	}
	if unchanged(st, cp, true) {
		t.Error("skipped on STATUS alone on an OBJECTID server, whose STATUS cannot show a new MAILBOXID")
	}
}

func TestVerify(t *testing.T) {
	day := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	stored := []store.StoredSummary{
		{UID: 1, Flags: []string{`\Seen`}, Size: 100, RawSize: 100, InternalDate: day},
		{UID: 2, Flags: []string{`\Seen`}, Size: 100, RawSize: 100, InternalDate: day},  // other size on the server
		{UID: 3, Flags: []string{`\Seen`}, Size: 100, RawSize: 90, InternalDate: day},   // bytes cut short
		{UID: 4, Flags: []string{`\Seen`}, Size: 100, RawSize: 100, InternalDate: day},  // other date
		{UID: 5, Flags: []string{`\Seen`}, Size: 100, RawSize: 100, InternalDate: day},  // other flags
		{UID: 6, Flags: []string{`\Seen`}, Size: 100, RawSize: 100, InternalDate: day},  // gone from the server
		{UID: 8, Flags: []string{"b", "a"}, Size: 100, RawSize: 100, InternalDate: day}, // flags in another order
	}
	server := []imapconn.Summary{
		{UID: 1, Flags: []string{`\Seen`}, Size: 100, InternalDate: day},
		{UID: 2, Flags: []string{`\Seen`}, Size: 101, InternalDate: day},
		{UID: 3, Flags: []string{`\Seen`}, Size: 100, InternalDate: day},
		{UID: 4, Flags: []string{`\Seen`}, Size: 100, InternalDate: day.Add(time.Hour)},
		{UID: 5, Flags: []string{`\Flagged`}, Size: 100, InternalDate: day},
		{UID: 7, Flags: nil, Size: 50, InternalDate: day}, // not stored
		{UID: 8, Flags: []string{"a", "b"}, Size: 100, InternalDate: day.Add(300 * time.Millisecond)},
	}
	v := verify(stored, server)
	if want := []uint32{1, 2, 3, 4, 5, 7, 8}; !slices.Equal(v.server, want) {
		t.Errorf("server UIDs %v, want %v", v.server, want)
	}
	if want := []uint32{7}; !slices.Equal(v.missing, want) {
		t.Errorf("missing %v, want %v", v.missing, want)
	}
	if want := []uint32{2, 3, 4}; !slices.Equal(v.differ, want) {
		t.Errorf("differ %v, want %v", v.differ, want)
	}
	if len(v.flags) != 1 || v.flags[0].UID != 5 || !slices.Equal(v.flags[0].Flags, []string{`\Flagged`}) {
		t.Errorf("flags %+v, want UID 5 \\Flagged", v.flags)
	}
}
