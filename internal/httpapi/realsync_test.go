package httpapi_test

import (
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/imaptest"
	"mailsync/internal/instance"
	"mailsync/internal/mailgen"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// TestEventStreamOfRealSync follows a real sync of a Dovecot mailbox, run by a real worker and the
// sync engine, through the event stream, leaving and coming back twice with Last-Event-ID: the
// client sees progress only grow, exactly one terminal event, and the final counts of the server.
func TestEventStreamOfRealSync(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		const messages = 4000
		dovecot := imaptest.StartDovecot(t)
		u := dovecot.AddUser(t, "bob", imapPassword)
		dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 3, Messages: messages})

		var engine *syncer.Syncer
		e := newEnv(t, dialect, func(c *instance.Config) {
			// alice is no admin: her account on loopback needs the operator's allow-list.
			engine = syncer.New(c.Store, boxOf(t, c), syncer.Options{BatchMessages: 100, Destinations: allowLoopback(t)})
			c.Login = engine // the real login check, against Dovecot
			withBody(c, engine.Run)
			// A real sync on a busy machine can be silent for more than the 600 ms of the fake
			// tasks' lifecycle, and a stream reaps a task it sees dead: give it seconds.
			c.Lifecycle.HeartbeatInterval, c.Lifecycle.HeartbeatTimeout, c.Lifecycle.SelfFence = 500*time.Millisecond, 5*time.Second, 3*time.Second
		})
		e.runWorkers(t)

		var a httpapi.AccountJSON
		e.request(e.alice, "POST", "/api/accounts", map[string]any{
			"name": "dovecot", "imap_host": dovecot.Host(), "imap_port": dovecot.Port(), "tls_mode": "none",
			"login": u.Login, "password": u.Password,
		}).want(t, 201).json(t, &a)
		st := e.startSync(e.alice, a.ID)

		var seen []sseEvent
		s1 := e.openStream(t, e.alice, st.Task.ID, "")
		for len(seen) == 0 || (seen[len(seen)-1].Task.Progress.MessagesDone == 0 && !terminalNames[seen[len(seen)-1].Name]) {
			seen = append(seen, s1.next(t))
		}
		s1.close()
		s2 := e.openStream(t, e.alice, st.Task.ID, seen[len(seen)-1].ID)
		if !terminalNames[seen[len(seen)-1].Name] {
			seen = append(seen, s2.next(t))
		}
		s2.close()
		if !terminalNames[seen[len(seen)-1].Name] {
			seen = append(seen, e.openStream(t, e.alice, st.Task.ID, seen[len(seen)-1].ID).rest(t)...)
		}
		checkSequence(t, seen, "succeeded")
		intermediate := 0
		for _, ev := range seen {
			if done := ev.Task.Progress.MessagesDone; done > 0 && done < messages {
				intermediate++
			}
		}
		if intermediate == 0 {
			t.Fatalf("no progress between the start and the end: %v", names(seen))
		}
		final := seen[len(seen)-1].Task
		if final.Progress.New != messages || final.Progress.MessagesDone != messages || final.Percent != 100 {
			t.Fatalf("terminal event %+v, want %d new messages", final.Progress, messages)
		}
		var stored int
		if err := e.store.DB().QueryRow(`SELECT count(*) FROM messages WHERE account_id = $1`, a.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != messages {
			t.Fatalf("%d messages stored, the server has %d", stored, messages)
		}
	})
}
