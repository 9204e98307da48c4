package httpapi_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/imaptest"
	"mailsync/internal/instance"
	"mailsync/internal/mailgen"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// TestFrozenServerShowsAsStalled freezes every Dovecot process (SIGSTOP) in the middle of a real
// sync, with its connection open. The worker is alive, so the task stays running and live; but
// within the stall threshold the task says it waits on its server (stalled_since, and a phase
// that begins "waiting for the server since"), /api/health/sync warns, and the task ends failed at
// the configured command timeout, without dialling the frozen server again.
func TestFrozenServerShowsAsStalled(t *testing.T) {
	const (
		stallAfter     = time.Second
		commandTimeout = 3 * time.Second
	)
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		dovecot := imaptest.StartDovecot(t)
		u := dovecot.AddUser(t, "frozen", imapPassword)
		dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 8, Messages: 1500, Folders: []string{"INBOX"}})

		fetching := make(chan struct{})
		var once sync.Once
		var engine *syncer.Syncer
		e := newEnv(t, dialect, func(c *instance.Config) {
			engine = syncer.New(c.Store, boxOf(t, c), syncer.Options{BatchMessages: 50, Destinations: allowLoopback(t),
				CommandTimeout: commandTimeout, StallAfter: stallAfter,
				Fetched: func(string, uint32) { once.Do(func() { close(fetching) }) }})
			c.Login = engine
			withBody(c, engine.Run)
		})
		e.runWorkers(t)

		var a httpapi.AccountJSON
		e.request(e.alice, "POST", "/api/accounts", map[string]any{
			"name": "frozen", "imap_host": dovecot.Host(), "imap_port": dovecot.Port(), "tls_mode": "none",
			"login": u.Login, "password": u.Password,
		}).want(t, 201).json(t, &a)
		id := e.startSync(e.alice, a.ID).Task.ID

		select {
		case <-fetching:
		case <-time.After(20 * time.Second):
			t.Fatal("the sync fetched nothing within 20 s")
		}
		dovecot.Pause(t)
		t.Cleanup(func() { dovecot.Resume(t) })
		frozen := time.Now()

		var tk httpapi.TaskJSON
		for {
			e.request(e.alice, "GET", "/api/sync/tasks/"+id, nil).want(t, 200).json(t, &tk)
			if tk.StalledSince != nil || tk.State != "running" {
				break
			}
			if time.Since(frozen) > stallAfter+3*time.Second {
				t.Fatalf("%v after the freeze the task does not say it is waiting: %+v", time.Since(frozen), tk)
			}
			time.Sleep(50 * time.Millisecond)
		}
		shown := time.Since(frozen)
		if tk.State != "running" || !tk.Live || !strings.HasPrefix(tk.Phase, "waiting for the server since ") ||
			!strings.Contains(tk.Phase, "fetching INBOX") {
			t.Fatalf("the frozen server's task: state %s, live %v, phase %q; want running, live, waiting for the server while fetching INBOX",
				tk.State, tk.Live, tk.Phase)
		}
		t.Logf("the task showed the stall %v after the freeze (stall threshold %v): %q", shown.Round(10*time.Millisecond), stallAfter, tk.Phase)

		var h httpapi.Health
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		check := h.Checks["sync:waitingOnServer"]
		if h.Status != "warn" || len(check) != 1 || check[0].Status != "warn" || check[0].ObservedValue != float64(1) {
			t.Fatalf("health while the server is frozen: %s, %+v; want a warning about one sync", h.Status, check)
		}
		if strings.Contains(check[0].Output, "INBOX") || strings.Contains(check[0].Output, dovecot.Host()) {
			t.Errorf("the health check, readable by every user, names a folder or a server: %q", check[0].Output)
		}

		for tk.State == "running" {
			if time.Since(frozen) > commandTimeout+5*time.Second {
				t.Fatalf("the task still runs %v after the freeze, with a command timeout of %v", time.Since(frozen), commandTimeout)
			}
			time.Sleep(50 * time.Millisecond)
			e.request(e.alice, "GET", "/api/sync/tasks/"+id, nil).want(t, 200).json(t, &tk)
		}
		ended := time.Since(frozen)
		if tk.State != "failed" || !strings.Contains(tk.Error, "no progress within 3s") {
			t.Fatalf("the task ended %s (%q), want failed by the command timeout", tk.State, tk.Error)
		}
		if ended < commandTimeout-time.Second {
			t.Fatalf("the task ended %v after the freeze, before the command timeout %v", ended, commandTimeout)
		}
		t.Logf("the task failed %v after the freeze (command timeout %v): %s", ended.Round(10*time.Millisecond), commandTimeout, tk.Error)
		if tk.StalledSince != nil {
			t.Errorf("a finished task still says it waits on the server: %v", tk.StalledSince)
		}
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		if c := h.Checks["sync:waitingOnServer"]; len(c) != 1 || c[0].Status != "pass" {
			t.Errorf("health after the task ended: %+v, want pass", c)
		}
	})
}
