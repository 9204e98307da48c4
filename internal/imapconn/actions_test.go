package imapconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/memimap"
)

// account is a mailbox on a test server: an admin client to set the scene and check it behind
// the code's back, and the configuration the code under test dials with.
type account struct {
	admin *imaptest.Client
	cfg   imapconn.Config
}

func dovecotAccount(t *testing.T) account {
	t.Helper()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	return account{admin: d.Client(t, u), cfg: config(d, u)}
}

func memAccount(t *testing.T, opts ...memimap.Option) account {
	t.Helper()
	m := imaptest.StartMemServer(t, opts...)
	u, err := m.AddUser("alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	return account{admin: imaptest.DialClient(t, m.Addr(), u), cfg: config(m, u)}
}

// flagsOf returns the sorted flags of one message, failing the test if it is not there.
func flagsOf(t *testing.T, c *imapconn.Conn, folder string, uid uint32) []string {
	t.Helper()
	got, err := c.FlagsOf(context.Background(), folder, imapconn.UIDs(uid))
	if err != nil {
		t.Fatalf("FlagsOf(%q, %d): %v", folder, uid, err)
	}
	if len(got) != 1 || got[0].UID != uid {
		t.Fatalf("FlagsOf(%q, %d) = %+v, want that message", folder, uid, got)
	}
	return slices.Sorted(slices.Values(got[0].Flags))
}

func modSeqOf(t *testing.T, c *imapconn.Conn, folder string, uid uint32) uint64 {
	t.Helper()
	got, err := c.FlagsOf(context.Background(), folder, imapconn.UIDs(uid))
	if err != nil || len(got) != 1 || got[0].ModSeq == 0 {
		t.Fatalf("FlagsOf(%q, %d) = %+v, %v; want it with a MODSEQ", folder, uid, got, err)
	}
	return got[0].ModSeq
}

func TestStoreFlagsDeltas(t *testing.T) {
	for _, name := range []string{"dovecot", "memserver"} {
		t.Run(name, func(t *testing.T) {
			a := dovecotAccount
			if name == "memserver" {
				a = func(t *testing.T) account { return memAccount(t) }
			}
			acc := a(t)
			uid := acc.admin.AddMessage("INBOX", message(1, 50), `\Seen`)
			other := acc.admin.AddMessage("INBOX", message(2, 50), `\Seen`)
			c := dial(t, acc.cfg)
			ctx := context.Background()
			if got := flagsOf(t, c, "INBOX", uid); !slices.Equal(got, []string{`\Seen`}) {
				t.Fatalf("flags before = %q", got)
			}

			// Another client sets a keyword between our read and our write: a delta keeps it.
			acc.admin.SetFlags("INBOX", uid, `\Seen`, "$other")
			res, err := c.StoreFlags(ctx, "INBOX", imapconn.UIDs(uid), []string{`\Flagged`}, []string{`\Seen`}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Modified) != 0 {
				t.Errorf("Modified = %v without UNCHANGEDSINCE", res.Modified)
			}
			if got, want := flagsOf(t, c, "INBOX", uid), []string{"$other", `\Flagged`}; !slices.Equal(got, want) {
				t.Errorf("flags after = %q, want %q", got, want)
			}
			if got := flagsOf(t, c, "INBOX", other); !slices.Equal(got, []string{`\Seen`}) {
				t.Errorf("flags of the message not named = %q, want it untouched", got)
			}

			// A read-only Select of the folder written to still works, and a write after it
			// selects the folder read-write again (a read-only folder would refuse the STORE).
			if _, err := c.Select(ctx, "INBOX", false); err != nil {
				t.Fatalf("Select after a write: %v", err)
			}
			if _, err := c.StoreFlags(ctx, "INBOX", imapconn.UIDs(other), nil, []string{`\Seen`}, 0); err != nil {
				t.Fatalf("StoreFlags after a read-only Select: %v", err)
			}
			if got := flagsOf(t, c, "INBOX", other); len(got) != 0 {
				t.Errorf("flags after removing \\Seen = %q, want none", got)
			}
			// A UID that is gone is no error.
			if _, err := c.StoreFlags(ctx, "INBOX", imapconn.UIDs(other+100), []string{`\Seen`}, nil, 0); err != nil {
				t.Errorf("StoreFlags on a missing UID: %v", err)
			}
		})
	}
}

func TestStoreFlagsUnchangedSince(t *testing.T) {
	acc := dovecotAccount(t)
	ctx := context.Background()
	c := dial(t, acc.cfg)
	if !c.Caps().CondStore {
		t.Fatal("Dovecot without CONDSTORE")
	}

	tests := []struct {
		name string
		// stale: another client changes the first message after we read the mod-sequence.
		stale       bool
		add, remove []string
	}{
		{name: "current, add", add: []string{`\Flagged`}},
		{name: "current, add and remove", add: []string{`\Flagged`}, remove: []string{`\Seen`}},
		{name: "current, remove", remove: []string{`\Seen`}},
		{name: "stale, add", stale: true, add: []string{`\Flagged`}},
		{name: "stale, add and remove", stale: true, add: []string{`\Flagged`}, remove: []string{`\Seen`}},
		{name: "stale, remove", stale: true, remove: []string{`\Seen`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := acc.admin.AddMessage("INBOX", message(10*i, 50), `\Seen`)
			untouched := acc.admin.AddMessage("INBOX", message(10*i+1, 50), `\Seen`)
			c := dial(t, acc.cfg)
			since := max(modSeqOf(t, c, "INBOX", changed), modSeqOf(t, c, "INBOX", untouched))
			wantChanged := []string{`\Seen`}
			if tt.stale {
				acc.admin.SetFlags("INBOX", changed, `\Seen`, "$theirs")
				wantChanged = []string{"$theirs", `\Seen`}
			}
			res, err := c.StoreFlags(ctx, "INBOX", imapconn.UIDs(changed, untouched), tt.add, tt.remove, since)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{`\Seen`}
			want = slices.DeleteFunc(append(want, tt.add...), func(f string) bool { return slices.Contains(tt.remove, f) })
			slices.Sort(want)
			if !tt.stale {
				wantChanged = want
			}
			if tt.stale && !slices.Equal(res.Modified, []uint32{changed}) {
				t.Errorf("Modified = %v, want [%d]", res.Modified, changed)
			}
			if !tt.stale && len(res.Modified) != 0 {
				t.Errorf("Modified = %v, want none", res.Modified)
			}
			if got := flagsOf(t, c, "INBOX", changed); !slices.Equal(got, wantChanged) {
				t.Errorf("flags of the message changed meanwhile = %q, want %q", got, wantChanged)
			}
			if got := flagsOf(t, c, "INBOX", untouched); !slices.Equal(got, want) {
				t.Errorf("flags of the other message = %q, want %q", got, want)
			}
		})
	}
}

// messageIDs returns the Message-ID header of each message of folder, by UID.
func messageIDs(t *testing.T, c *imapconn.Conn, folder string) map[uint32]string {
	t.Helper()
	if _, err := c.Select(context.Background(), folder, false); err != nil {
		t.Fatal(err)
	}
	out := map[uint32]string{}
	for uid, m := range fetchAll(t, c, imapconn.UIDsFrom(1)) {
		_, rest, _ := bytes.Cut(m.Raw, []byte("Message-ID: "))
		id, _, _ := bytes.Cut(rest, []byte("\r\n"))
		out[uid] = string(id)
	}
	return out
}

func TestMove(t *testing.T) {
	tests := []struct {
		name     string
		account  func(t *testing.T) account
		fallback bool // COPY, STORE \Deleted, UID EXPUNGE
	}{
		{"dovecot MOVE", dovecotAccount, false},
		{"dovecot COPY and EXPUNGE", dovecotAccount, true},
		{"memserver IMAP4rev2 MOVE", func(t *testing.T) account { return memAccount(t, memimap.WithIMAP4rev2()) }, false},
		{"memserver IMAP4rev2 COPY and EXPUNGE", func(t *testing.T) account { return memAccount(t, memimap.WithIMAP4rev2()) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc := tt.account(t)
			acc.admin.CreateFolder("Archive")
			acc.admin.AddMessage("Archive", message(100, 50)) // dest UIDs differ from source UIDs
			var uids []uint32
			for i := range 4 {
				uids = append(uids, acc.admin.AddMessage("INBOX", message(i, 50)))
			}
			c := dial(t, acc.cfg)
			if tt.fallback {
				imapconn.WithoutMove(c)
			}
			ctx := context.Background()
			before := messageIDs(t, c, "INBOX")

			res, err := c.Move(ctx, "INBOX", imapconn.UIDs(uids[0], uids[2]), "Archive")
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(ctx, "Archive")
			if err != nil {
				t.Fatal(err)
			}
			if res.DestUIDValidity != st.UIDValidity || len(res.Map) != 2 {
				t.Fatalf("Move = %+v, want 2 UIDs mapped into UIDVALIDITY %d", res, st.UIDValidity)
			}
			archive := messageIDs(t, c, "Archive")
			for src, dst := range res.Map {
				if archive[dst] != before[src] || before[src] == "" {
					t.Errorf("UID %d went to %d, which holds %q, want %q", src, dst, archive[dst], before[src])
				}
			}
			if got := acc.admin.FolderCounts(); got["INBOX"] != 2 || got["Archive"] != 3 {
				t.Errorf("counts after the move = %v, want INBOX 2, Archive 3: exactly one copy", got)
			}

			// Moving again what is gone already: no error, nothing mapped, no duplicate.
			res, err = c.Move(ctx, "INBOX", imapconn.UIDs(uids[0]), "Archive")
			if err != nil {
				t.Fatalf("moving a UID already moved: %v", err)
			}
			if res.Map == nil || len(res.Map) != 0 {
				t.Errorf("moving a UID already moved: Map = %v, want an empty map", res.Map)
			}
			if got := acc.admin.FolderCounts(); got["INBOX"] != 2 || got["Archive"] != 3 {
				t.Errorf("counts after moving a UID already moved = %v, want INBOX 2, Archive 3", got)
			}

			// A destination that does not exist: a permanent error that says so, nothing moved.
			_, err = c.Move(ctx, "INBOX", imapconn.UIDs(uids[1]), "Nope")
			if !imapconn.IsNoSuchFolder(err) || imapconn.Classify(err) != imapconn.ClassPermanent {
				t.Errorf("move to a missing folder: %v (IsNoSuchFolder %v, class %q), want a permanent no-such-folder error",
					err, imapconn.IsNoSuchFolder(err), imapconn.Classify(err))
			}
			if err != nil && !strings.Contains(err.Error(), "server said NO") {
				t.Errorf("error %q does not carry the server's answer", err)
			}
			// So does a source that does not exist.
			if _, err := c.Move(ctx, "Gone", imapconn.UIDs(1), "Archive"); !imapconn.IsNoSuchFolder(err) {
				t.Errorf("move from a missing folder: %v, want a no-such-folder error", err)
			}
			if got := acc.admin.FolderCounts(); got["INBOX"] != 2 || got["Archive"] != 3 {
				t.Errorf("counts after failed moves = %v, want INBOX 2, Archive 3", got)
			}
		})
	}
}

// Without MOVE and UIDPLUS a move would need a plain EXPUNGE: Move refuses and changes nothing.
func TestMoveWithoutUIDPlus(t *testing.T) {
	for _, name := range []string{"dovecot masked", "memserver IMAP4rev1"} {
		t.Run(name, func(t *testing.T) {
			var acc account
			if name == "memserver IMAP4rev1" {
				acc = memAccount(t) // advertises neither MOVE nor UIDPLUS
			} else {
				acc = dovecotAccount(t)
			}
			acc.admin.CreateFolder("Archive")
			uid := acc.admin.AddMessage("INBOX", message(1, 50))
			c := dial(t, acc.cfg)
			imapconn.WithoutMove(c)
			imapconn.WithoutUIDPlus(c)
			if caps := c.Caps(); caps.Move || caps.UIDPlus {
				t.Fatalf("caps = %+v, want neither MOVE nor UIDPLUS", caps)
			}
			_, err := c.Move(context.Background(), "INBOX", imapconn.UIDs(uid), "Archive")
			if imapconn.Classify(err) != imapconn.ClassPermanent || !strings.Contains(fmt.Sprint(err), "UIDPLUS") {
				t.Errorf("Move = %v, want a permanent error naming UIDPLUS", err)
			}
			if err := c.Expunge(context.Background(), "INBOX", imapconn.UIDs(uid)); !strings.Contains(fmt.Sprint(err), "UIDPLUS") {
				t.Errorf("Expunge = %v, want an error naming UIDPLUS", err)
			}
			if got := acc.admin.FolderCounts(); got["INBOX"] != 1 || got["Archive"] != 0 {
				t.Errorf("counts = %v, want nothing moved", got)
			}
		})
	}
}

func TestExpunge(t *testing.T) {
	for _, name := range []string{"dovecot", "memserver IMAP4rev2"} {
		t.Run(name, func(t *testing.T) {
			if name == "dovecot" {
				testExpunge(t, dovecotAccount(t))
			} else {
				testExpunge(t, memAccount(t, memimap.WithIMAP4rev2()))
			}
		})
	}
}

func testExpunge(t *testing.T, acc account) {
	var uids []uint32
	for i := range 3 {
		uids = append(uids, acc.admin.AddMessage("INBOX", message(i, 50)))
	}
	// Another client marked a message \Deleted without expunging it: it must survive ours.
	acc.admin.SetFlags("INBOX", uids[2], `\Deleted`)
	c := dial(t, acc.cfg)
	ctx := context.Background()
	if err := c.Expunge(ctx, "INBOX", imapconn.UIDs(uids[0], uids[0]+1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	got, err := c.SearchAllUIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uids[1:]; !slices.Equal(got, want) {
		t.Errorf("UIDs after Expunge = %v, want %v", got, want)
	}
	if err := c.Expunge(ctx, "INBOX", imapconn.UIDs(uids[0])); err != nil {
		t.Errorf("expunging a UID already gone: %v", err)
	}
	if err := c.Expunge(ctx, "Nope", imapconn.UIDs(1)); !imapconn.IsNoSuchFolder(err) {
		t.Errorf("Expunge in a missing folder: %v, want a no-such-folder error", err)
	}
}

func TestAppend(t *testing.T) {
	for _, name := range []string{"dovecot", "memserver"} {
		t.Run(name, func(t *testing.T) {
			acc := memAccount(t)
			if name == "dovecot" {
				acc = dovecotAccount(t)
			}
			acc.admin.CreateFolder("Drafts")
			acc.admin.AddMessage("Drafts", message(7, 50))
			c := dial(t, acc.cfg)
			ctx := context.Background()
			date := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("", -5*3600))
			raw := []byte("From: a@example.org\r\nTo: b@example.org\r\nSubject: draft\r\n" +
				"Message-ID: <draft-1@mailsync.example>\r\n\r\nUnfinished.\r\n")

			res, err := c.Append(ctx, "Drafts", []string{`\Draft`, `\Seen`}, date, raw)
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(ctx, "Drafts")
			if err != nil {
				t.Fatal(err)
			}
			if res.UID == 0 || res.UIDValidity != st.UIDValidity {
				t.Fatalf("Append = %+v, want APPENDUID in UIDVALIDITY %d", res, st.UIDValidity)
			}
			if got, want := flagsOf(t, c, "Drafts", res.UID), []string{`\Draft`, `\Seen`}; !slices.Equal(got, want) {
				t.Errorf("flags = %q, want %q", got, want)
			}
			m := fetchAll(t, c, imapconn.UIDs(res.UID))[res.UID]
			if !bytes.Equal(m.Raw, raw) || !m.InternalDate.Equal(date) {
				t.Errorf("appended message = %q dated %v, want %q dated %v", m.Raw, m.InternalDate, raw, date)
			}

			found, err := c.SearchHeader(ctx, "Drafts", "Message-ID", "<draft-1@mailsync.example>")
			if err != nil || !slices.Equal(found, []uint32{res.UID}) {
				t.Errorf("SearchHeader = %v, %v; want [%d]", found, err, res.UID)
			}
			if found, err := c.SearchHeader(ctx, "Drafts", "Message-ID", "<draft-2@mailsync.example>"); err != nil || len(found) != 0 {
				t.Errorf("SearchHeader for an id not there = %v, %v; want nothing", found, err)
			}
			if _, err := c.SearchHeader(ctx, "Nope", "Message-ID", "<x@y>"); !imapconn.IsNoSuchFolder(err) {
				t.Errorf("SearchHeader in a missing folder: %v, want a no-such-folder error", err)
			}

			res, err = c.Append(ctx, "INBOX", nil, time.Time{}, raw)
			if err != nil || res.UID == 0 {
				t.Fatalf("Append without flags or date = %+v, %v", res, err)
			}
			if got := flagsOf(t, c, "INBOX", res.UID); len(got) != 0 {
				t.Errorf("flags = %q, want none", got)
			}
			if m := fetchAll(t, c, imapconn.UIDs(res.UID))[res.UID]; time.Since(m.InternalDate).Abs() > time.Hour {
				t.Errorf("internal date %v, want about now", m.InternalDate)
			}
		})
	}
}

// An APPEND to a missing folder is a permanent no-such-folder error, for a small message (sent
// with the command) and a large one (which waits for the server's go-ahead).
func TestAppendMissingFolder(t *testing.T) {
	for _, size := range []int{100, 64 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			acc := dovecotAccount(t)
			c := dial(t, acc.cfg)
			_, err := c.Append(context.Background(), "Nope", []string{`\Seen`}, time.Time{}, message(1, size))
			if !imapconn.IsNoSuchFolder(err) || imapconn.Classify(err) != imapconn.ClassPermanent {
				t.Fatalf("Append to a missing folder: %v (class %q), want a permanent no-such-folder error", err, imapconn.Classify(err))
			}
			var e *imapconn.Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), `append a message of`) || !strings.Contains(err.Error(), "server said NO [TRYCREATE]") {
				t.Errorf("error %q, want an *Error with the server's answer", err)
			}
			// The connection may have been closed (see Append), but then it says so.
			_, err = c.Status(context.Background(), "INBOX")
			if err != nil && (imapconn.Classify(err) != imapconn.ClassTransient || !strings.Contains(err.Error(), "closed")) {
				t.Errorf("Status after the failed Append: %v, want success or a transient error saying the connection is closed", err)
			}
		})
	}
}
