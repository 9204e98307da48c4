package syncer_test

import (
	"context"
	"testing"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/syncer"
)

func startCyrus(t *testing.T) (server, *imaptest.Client) {
	t.Helper()
	cy := imaptest.StartCyrus(t)
	u := cy.AddUser(t, "bob", "secret-pw")
	c := cy.Client(t, u) // the first login creates the INBOX
	srv := server{host: cy.Host(), port: cy.Port(), login: u.Login, passwd: u.Password, delim: "/",
		hasCondStore: true, objectID: true, describe: "cyrus"}
	return srv, c
}

// TestMirrorsCyrus runs the main scenario and the renames on Cyrus IMAP 3.6, the server that keeps
// UIDVALIDITY across RENAME: only MAILBOXID (OBJECTID) tells a renamed folder from the one whose
// name it took.
func TestMirrorsCyrus(t *testing.T) {
	t.Run("scenario/sqlite", func(t *testing.T) {
		t.Parallel()
		srv, c := startCyrus(t)
		scenario(t, newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 7}), c)
	})
	t.Run("renames/postgres", func(t *testing.T) {
		t.Parallel()
		srv, c := startCyrus(t)
		renames(t, newEnv(t, "postgres", srv, syncer.Options{}), c)
	})
}

// TestRenamesDovecot runs the renames on Dovecot (no OBJECTID; a new folder gets a new
// UIDVALIDITY there, which is what tells the folders apart).
func TestRenamesDovecot(t *testing.T) {
	t.Parallel()
	srv, c, _ := startDovecot(t)
	renames(t, newEnv(t, "sqlite", srv, syncer.Options{}), c)
}

// renames moves folders around under the syncer: a rename onto the name of a folder just
// deleted, a swap of two names, and a plain rename; the store must equal the server after each.
func renames(t *testing.T, e *env, c *imaptest.Client) {
	add := func(folder string, from int64, n int, flags ...string) {
		for i := range n {
			c.AddMessage(folder, []byte(mailgen.Message(from, i+1)), flags...)
		}
	}
	// A and B are created in the same second: on Cyrus they get the same UIDVALIDITY, and with
	// as many messages each, the same UIDNEXT and MESSAGES too.
	c.CreateFolder("A")
	c.CreateFolder("B")
	add("A", 10, 3, `\Seen`)
	add("B", 20, 3, `\Flagged`)
	step(t, e, false, "first sync", 6, 0, 0)
	if e.srv.objectID {
		a, b := storedFolder(t, e, "A"), storedFolder(t, e, "B")
		if a.MailboxID == "" || b.MailboxID == "" || a.MailboxID == b.MailboxID {
			t.Errorf("MAILBOXIDs stored: A %q, B %q; want two different ids", a.MailboxID, b.MailboxID)
		}
		if a.UIDValidity != b.UIDValidity {
			t.Logf("A and B got different UIDVALIDITYs (%d, %d): created across a second boundary", a.UIDValidity, b.UIDValidity)
		}
	}

	// A server may drop a session whose selected folder is renamed or deleted under it.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.DeleteFolder("A")
	c.RenameFolder("B", "A")
	// With MAILBOXID (Cyrus) a rename keeps the messages; without, it is a new folder (Dovecot).
	renamed := 3
	if e.srv.objectID {
		renamed = 0
	}
	step(t, e, false, "delete A, rename B to A", renamed, 0, 0)
	if e.srv.objectID {
		e.assertFolderChanges(t, "delete A, rename B to A", "folder.deleted A", "folder.renamed A")
	} else {
		e.assertFolderChanges(t, "delete A, rename B to A", "folder.deleted B", "folder.reset A")
	}

	c.CreateFolder("C")
	c.CreateFolder("D")
	add("C", 30, 2)
	add("D", 40, 2, `\Answered`)
	step(t, e, false, "two more folders", 4, 0, 0)
	c.RenameFolder("C", "swap")
	c.RenameFolder("D", "C")
	c.RenameFolder("swap", "D")
	step(t, e, false, "swap C and D", 4, 0, 0)

	c.RenameFolder("A", "E")
	step(t, e, false, "rename A to E", renamed, 0, 0)
	step(t, e, false, "no change", 0, 0, 0)
	step(t, e, true, "force full", 0, 0, 0)
}

// storedFolder returns the store's checkpoint of one folder.
func storedFolder(t *testing.T, e *env, name string) (f struct {
	UIDValidity uint32
	MailboxID   string
}) {
	t.Helper()
	folders, err := e.store.Folders(context.Background(), e.acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, sf := range folders {
		if sf.Name == name {
			f.UIDValidity, f.MailboxID = sf.UIDValidity, sf.MailboxID
			return f
		}
	}
	t.Fatalf("folder %q not stored", name)
	return f
}
