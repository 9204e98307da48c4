package syncer_test

import (
	"context"
	"strings"
	"testing"

	"mailsync/internal/changes/changestest"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/memimap"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
)

// unparseable is a message mailparse reports problems with (an impossible date).
const unparseable = "From: a@example.test\r\nSubject: bad date\r\nDate: 45 Smarch 2024 25:61:00 +9999\r\n\r\nbody\r\n"

func startDovecot(t *testing.T) (server, *imaptest.Client, *imaptest.Dovecot) {
	t.Helper()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: ".", hasCondStore: true, describe: "dovecot"}
	return srv, d.Client(t, u), d
}

func startMemServer(t *testing.T, opts ...memimap.Option) (server, *imaptest.Client) {
	t.Helper()
	m := imaptest.StartMemServer(t, opts...)
	u, err := m.AddUser("bob", "secret-pw")
	if err != nil {
		t.Fatal(err)
	}
	srv := server{host: m.Host(), port: m.Port(), login: u.Login, passwd: u.Password, delim: "/", describe: "memserver"}
	return srv, imaptest.DialClient(t, m.Addr(), u)
}

// TestMirrorsServer runs the main scenario on a real Dovecot (SQLite and PostgreSQL) and on
// go-imap's in-memory server (no CONDSTORE: the FLAGS-scan path).
func TestMirrorsServer(t *testing.T) {
	t.Run("dovecot/sqlite", func(t *testing.T) {
		t.Parallel()
		srv, c, _ := startDovecot(t)
		scenario(t, newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 7}), c)
	})
	t.Run("dovecot/postgres", func(t *testing.T) {
		t.Parallel()
		srv, c, _ := startDovecot(t)
		scenario(t, newEnv(t, "postgres", srv, syncer.Options{}), c)
	})
	t.Run("memserver/sqlite", func(t *testing.T) {
		t.Parallel()
		srv, c := startMemServer(t)
		scenario(t, newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 5, BatchBytes: 20 << 10}), c)
	})
	t.Run("memserver-imap4rev2/sqlite", func(t *testing.T) {
		// LIST-STATUS and ESEARCH, still without CONDSTORE.
		t.Parallel()
		srv, c := startMemServer(t, memimap.WithIMAP4rev2())
		scenario(t, newEnv(t, "sqlite", srv, syncer.Options{}), c)
	})
}

// step checks one sync's counters and that the store mirrors the server after it.
func step(t *testing.T, e *env, force bool, name string, wantNew, wantUpdated, wantDeleted int) task.Task {
	t.Helper()
	before := e.fetched.Load()
	tk := e.syncOK(t, force)
	p := tk.Progress
	if p.New != wantNew || p.Updated != wantUpdated || p.Deleted != wantDeleted {
		t.Errorf("%s: new/updated/deleted = %d/%d/%d, want %d/%d/%d", name, p.New, p.Updated, p.Deleted, wantNew, wantUpdated, wantDeleted)
	}
	if got := e.fetched.Load() - before; got != int64(wantNew) {
		t.Errorf("%s: downloaded %d bodies, want %d", name, got, wantNew)
	}
	if p.MessagesDone != p.MessagesTotal || p.FoldersDone != p.FoldersTotal {
		t.Errorf("%s: progress not complete: %+v", name, p)
	}
	e.assertMirrors(t)
	e.assertChanges(t, tk)
	return tk
}

func scenario(t *testing.T, e *env, c *imaptest.Client) {
	d := e.srv.delim
	archive, donnees := "Archive"+d+"2024", "Données"
	for _, f := range []string{"Sent", archive, donnees} {
		c.CreateFolder(f)
	}
	const corpus = 40
	err := mailgen.Generate(mailgen.Options{Seed: 7, Messages: corpus, Folders: []string{"INBOX", "Sent", "Archive/2024", donnees}},
		func(m mailgen.Mail) error {
			c.AddMessageAt(strings.ReplaceAll(m.Folder, "/", d), m.Raw, m.Date, m.Flags...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	badUID := c.AddMessage("INBOX", []byte(unparseable))

	tk := step(t, e, false, "first sync", corpus+1, 0, 0)
	// INBOX, Sent, Données and Archive/2024; Cyrus also makes the parent Archive a folder.
	if folders := len(e.serverState(t)); tk.Progress.BytesDone == 0 || tk.Progress.FoldersTotal != folders || folders < 4 {
		t.Errorf("first sync: progress %+v, want bytes and the server's %d folders (at least 4)", tk.Progress, folders)
	}
	assertParseError(t, e, badUID)

	writes, reads := e.calls.writes.Load(), e.calls.folderReads.Load()
	step(t, e, false, "no change", 0, 0, 0)
	if w := e.calls.writes.Load() - writes; w != 0 {
		t.Errorf("no change: %d fenced writes, want none", w)
	}
	if r := e.calls.folderReads.Load() - reads; e.srv.hasCondStore && !e.srv.objectID && r != 0 {
		// With CONDSTORE an unchanged folder is decided on LIST-STATUS alone: it is not even
		// selected, so its stored UIDs are never read.
		t.Errorf("no change: %d folders examined, want none", r)
	}

	n1 := c.AddMessage("INBOX", []byte(mailgen.Message(1, 1)), `\Seen`)
	n2 := c.AddMessage("INBOX", []byte(mailgen.Message(1, 2)), `\Seen`)
	c.AddMessage("INBOX", []byte(mailgen.Message(1, 3)))
	s1 := c.AddMessage("Sent", []byte(mailgen.Message(1, 4)), `\Seen`)
	step(t, e, false, "new mail", 4, 0, 0)

	c.SetFlags("INBOX", n1, `\Flagged`, `$Label1`)
	c.SetFlags("INBOX", n2)
	step(t, e, false, "flags set and cleared", 0, 2, 0)

	c.Expunge("INBOX", n1, badUID)
	c.Expunge("Sent", s1)
	step(t, e, false, "expunge", 0, 0, 3)

	c.DeleteFolder(donnees)
	c.CreateFolder(donnees)
	c.AddMessage(donnees, []byte(mailgen.Message(2, 1)))
	c.AddMessage(donnees, []byte(mailgen.Message(2, 2)))
	step(t, e, false, "folder deleted and recreated", 2, 0, 0)
	e.assertFolderChanges(t, "folder deleted and recreated", "folder.reset "+donnees)

	sent := len(e.serverState(t)["Sent"])
	// Dovecot drops a session whose selected folder is renamed under it.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.RenameFolder("Sent", "Sent Items")
	if e.srv.objectID {
		// The server names its folders (MAILBOXID): the store renames the folder, messages and
		// all, and downloads nothing.
		sent = 0
	}
	step(t, e, false, "folder renamed", sent, 0, 0)
	if e.srv.objectID {
		e.assertFolderChanges(t, "folder renamed", "folder.renamed Sent Items")
	} else {
		e.assertFolderChanges(t, "folder renamed", "folder.deleted Sent", "folder.created Sent Items")
	}

	nonASCII := "Entwürfe" + d + "日本語"
	c.CreateFolder(nonASCII)
	c.AddMessage(nonASCII, []byte(mailgen.Message(3, 1)))
	tk = step(t, e, false, "non-ASCII folder", 1, 0, 0)
	if _, ok := e.storeState(t)[nonASCII]; !ok {
		t.Errorf("folder %q not stored under its decoded name", nonASCII)
	}

	// A row lost behind the syncer's back (DB() exists for such tests): only force_full, which
	// diffs every UID, finds it, and downloads it alone. No change can say it was lost; the
	// replay is told (changestest.Tampered).
	var lost changestest.Tampered
	if err := e.store.DB().QueryRow(`DELETE FROM messages WHERE id = (SELECT MIN(id) FROM messages)
		RETURNING (SELECT name FROM folders WHERE folders.id = messages.folder_id), uid`).Scan(&lost.Folder, &lost.UID); err != nil {
		t.Fatal(err)
	}
	e.tampered = append(e.tampered, lost)
	step(t, e, true, "force full", 1, 0, 0)
	step(t, e, false, "no change after force", 0, 0, 0)
}

func assertParseError(t *testing.T, e *env, uid uint32) {
	t.Helper()
	ctx := context.Background()
	folders, err := e.store.Folders(ctx, e.acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		if f.Name != "INBOX" {
			continue
		}
		msgs, err := e.store.FolderMessages(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.UID == uid {
				if m.ParseError == "" {
					t.Errorf("unparseable message stored without parse_error")
				}
				if m.Subject != "bad date" {
					t.Errorf("unparseable message: subject %q, want what could be recovered", m.Subject)
				}
				return
			}
		}
	}
	t.Errorf("unparseable message UID %d not stored", uid)
}

// TestProgressIsMonotonic checks what a progress bar sees during a first sync: the total is known
// before the first message is counted done, and nothing ever goes backwards.
func TestProgressIsMonotonic(t *testing.T) {
	t.Parallel()
	const total = 1000
	srv := dovecotWithCorpus(t, total)
	e := newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 40})
	tk := e.syncOK(t, false)
	reports := e.reports()
	if len(reports) < total/40 {
		t.Fatalf("%d progress reports for %d messages in batches of 40", len(reports), total)
	}
	var last task.Progress
	percent := func(p task.Progress) float64 {
		if p.MessagesTotal == 0 {
			return 0
		}
		return float64(p.MessagesDone) / float64(p.MessagesTotal)
	}
	for i, p := range reports {
		if p.MessagesDone > 0 && p.MessagesTotal < total {
			t.Fatalf("report %d: %d done of a total of %d: the total was not known first", i, p.MessagesDone, p.MessagesTotal)
		}
		if p.MessagesDone < last.MessagesDone || p.BytesDone < last.BytesDone || p.New < last.New ||
			p.FoldersDone < last.FoldersDone || percent(p) < percent(last) {
			t.Fatalf("report %d went backwards: %+v after %+v", i, p, last)
		}
		last = p
	}
	if tk.Progress.MessagesDone != total || tk.Progress.New != total || tk.Progress.FoldersDone != tk.Progress.FoldersTotal {
		t.Errorf("final progress %+v", tk.Progress)
	}
	phases := map[string]bool{}
	for _, p := range reports {
		phases[strings.Fields(p.Phase + " x")[0]] = true
	}
	for _, want := range []string{"listing", "fetching", "done"} {
		if !phases[want] {
			t.Errorf("phase %q never reported (saw %v)", want, phases)
		}
	}
}
