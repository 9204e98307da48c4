package imapconn_test

import (
	"context"
	"testing"

	"mailsync/internal/imaptest"
)

// TestSelectMailboxIDCyrus checks that Select reports Cyrus's MAILBOXID, that a rename keeps it
// while the UIDVALIDITY stays too, and that a folder renamed onto a deleted folder's name shows
// another id under that name.
func TestSelectMailboxIDCyrus(t *testing.T) {
	t.Parallel()
	cy := imaptest.StartCyrus(t)
	u := cy.AddUser(t, "carol", "pw")
	admin := cy.Client(t, u)
	admin.CreateFolder("A")
	admin.CreateFolder("B")
	c := dial(t, config(cy, u))
	if !c.Caps().ObjectID {
		t.Fatalf("Cyrus: caps %+v, want ObjectID", c.Caps())
	}
	ctx := context.Background()
	a, err := c.Select(ctx, "A", true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Select(ctx, "B", true)
	if err != nil {
		t.Fatal(err)
	}
	if a.MailboxID == "" || b.MailboxID == "" || a.MailboxID == b.MailboxID {
		t.Fatalf("MAILBOXIDs %q and %q, want two different ids", a.MailboxID, b.MailboxID)
	}
	if _, err := c.Select(ctx, "INBOX", true); err != nil { // nothing renamed under a selection
		t.Fatal(err)
	}
	admin.DeleteFolder("A")
	admin.RenameFolder("B", "A")
	now, err := c.Select(ctx, "A", true)
	if err != nil {
		t.Fatal(err)
	}
	if now.MailboxID != b.MailboxID || now.UIDValidity != b.UIDValidity {
		t.Errorf("after delete A, rename B to A: A is %+v, want B's id %q and UIDVALIDITY %d", now, b.MailboxID, b.UIDValidity)
	}
	// LIST and STATUS never carry the id (see objectid.go).
	st, err := c.Status(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if st.MailboxID != "" || st.UIDValidity != b.UIDValidity {
		t.Errorf("STATUS A = %+v, want B's UIDVALIDITY and no id", st)
	}
}

// TestSelectNoObjectID checks that a server without OBJECTID reports no id.
func TestSelectNoObjectID(t *testing.T) {
	t.Parallel()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "dave", "pw")
	c := dial(t, config(d, u))
	if c.Caps().ObjectID {
		t.Fatalf("Dovecot 2.3 advertises OBJECTID: caps %+v", c.Caps())
	}
	st, err := c.Select(context.Background(), "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	if st.MailboxID != "" {
		t.Errorf("MailboxID %q without OBJECTID", st.MailboxID)
	}
}
