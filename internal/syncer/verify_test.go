package syncer_test

import (
	"testing"

	"mailsync/internal/changes/changestest"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/syncer"
)

// TestForceFullRepairsStore damages stored rows behind the syncer's back, the way a server that
// reuses (name, UIDVALIDITY, UID) for other messages leaves them, and checks that a forced full
// sync finds every one by comparing RFC822.SIZE, INTERNALDATE and FLAGS with the server, fetches
// again only the messages stored differently and leaves the store equal to the server.
func TestForceFullRepairsStore(t *testing.T) {
	t.Run("dovecot/sqlite", func(t *testing.T) {
		t.Parallel()
		srv, c, _ := startDovecot(t)
		repairScenario(t, newEnv(t, "sqlite", srv, syncer.Options{}), c)
	})
	t.Run("memserver/postgres", func(t *testing.T) {
		t.Parallel()
		srv, c := startMemServer(t)
		repairScenario(t, newEnv(t, "postgres", srv, syncer.Options{BatchMessages: 3}), c)
	})
}

func repairScenario(t *testing.T, e *env, c *imaptest.Client) {
	c.CreateFolder("Sent")
	for i := range 8 {
		c.AddMessage("INBOX", []byte(mailgen.Message(50, i+1)), `\Seen`)
	}
	for i := range 4 {
		c.AddMessage("Sent", []byte(mailgen.Message(60, i+1)))
	}
	step(t, e, false, "first sync", 12, 0, 0)

	// Four rows of INBOX, each wrong in one way, and one of Sent that holds another message.
	e.tamper(t, "INBOX", 1, `size = size + 1`)
	e.tamper(t, "INBOX", 2, `raw = substr(raw, 1, 20)`)
	e.tamper(t, "INBOX", 3, `internal_date = internal_date - 86400000`)
	e.tamper(t, "INBOX", 4, `flags = '\Flagged'`)
	e.tamper(t, "Sent", 2, `raw = (SELECT m.raw FROM messages m WHERE m.id = (SELECT MIN(id) FROM messages)),
		size = (SELECT m.size FROM messages m WHERE m.id = (SELECT MIN(id) FROM messages))`)
	if diff := compareStates(e.serverState(t), e.storeState(t)); diff == "" {
		t.Fatal("tampering left the store equal to the server: the test tests nothing")
	}
	// Four bodies again (size, bytes, date, another message), one flag update.
	step(t, e, true, "force full", 4, 1, 0)
	step(t, e, false, "no change", 0, 0, 0)
}

// tamper changes one stored row of folder with an SQL SET clause, as a damaged store would hold
// it.
func (e *env) tamper(t *testing.T, folder string, uid uint32, set string) {
	t.Helper()
	res, err := e.store.DB().Exec(`UPDATE messages SET `+set+`
		WHERE uid = $1 AND folder_id = (SELECT id FROM folders WHERE account_id = $2 AND name = $3)`,
		int64(uid), e.acct.ID, folder)
	if err != nil {
		t.Fatalf("tamper %s UID %d: %v", folder, uid, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tamper %s UID %d: %d rows changed, want 1", folder, uid, n)
	}
	e.tampered = append(e.tampered, changestest.Tampered{Folder: folder, UID: uid})
}
