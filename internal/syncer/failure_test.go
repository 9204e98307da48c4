package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/changes/changestest"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
)

func wantFailed(t *testing.T, tk task.Task, fragments ...string) {
	t.Helper()
	t.Logf("task error: %s", tk.Error)
	if tk.State != task.Failed {
		t.Fatalf("task %s, want failed (error %q)", tk.State, tk.Error)
	}
	for _, f := range fragments {
		if !strings.Contains(tk.Error, f) {
			t.Errorf("task error %q does not say %q", tk.Error, f)
		}
	}
}

func TestWrongPasswordFailsWithAuthError(t *testing.T) {
	t.Parallel()
	srv, _, _ := startDovecot(t)
	srv.passwd = "not-the-password"
	e := newEnv(t, "sqlite", srv, syncer.Options{})
	wantFailed(t, e.sync(t, false), "auth error", "authentication failed", "login")
}

func TestUnreachableHostFailsWithTransientError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there any more: connection refused
	e := newEnv(t, "sqlite", server{host: "127.0.0.1", port: port, login: "bob", passwd: "pw"}, syncer.Options{})
	wantFailed(t, e.sync(t, false), "transient error", "connect to 127.0.0.1")
}

// TestServerDiesMidFetch kills Dovecot in the middle of a first sync: the task fails with a
// transient error, what was committed is intact, and the next sync resumes from the checkpoint.
func TestServerDiesMidFetch(t *testing.T) {
	t.Parallel()
	// Big enough that the rest of INBOX cannot sit in socket buffers when the server dies: the
	// fetch itself must see the connection drop.
	const total, killAt = 4000, 300
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	d.WriteMailgen(t, u, mailgen.Options{Seed: 5, Messages: total})
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: "."}
	warm(t, srv)

	var (
		seen atomic.Int64
		once sync.Once
	)
	e := newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 50, Fetched: func(folder string, _ uint32) {
		if folder == "INBOX" && seen.Add(1) == killAt {
			once.Do(d.Stop)
		}
	}})
	wantFailed(t, e.sync(t, false), `folder "INBOX": transient error`, "fetch bodies")
	stored := e.storedCount(t)
	if stored == 0 || stored >= total {
		t.Fatalf("%d of %d messages stored before the server died; want some but not all", stored, total)
	}

	d.Start(t)
	// What was committed before the crash is exactly the server's.
	server := e.serverState(t)
	for name, msgs := range e.storeState(t) {
		for _, m := range msgs {
			if diff := compareStates(map[string][]serverMessage{name: {m}}, map[string][]serverMessage{name: pick(server[name], m.UID)}); diff != "" {
				t.Fatalf("after the crash: %s", diff)
			}
		}
	}
	before := e.fetched.Load()
	e.syncOK(t, false)
	e.assertMirrors(t)
	if again := e.fetched.Load() - before; again != int64(total-stored) {
		t.Errorf("the resumed sync downloaded %d bodies; %d were missing", again, total-stored)
	}
	// The failed run's batches are in the log once each, then its sync.failed, then the rest.
	log := changestest.Check(t, e.store, e.acct.ID)
	if got := syncEnds(log); !slices.Equal(got, []string{"sync.failed failed", "sync.succeeded succeeded"}) {
		t.Errorf("task ends in the change log: %q", got)
	}
}

// syncEnds lists the sync.* changes of a log as "kind state".
func syncEnds(log []changes.Change) []string {
	var out []string
	for _, c := range log {
		if c.Kind == changes.SyncSucceeded || c.Kind == changes.SyncFailed {
			var p changes.Sync
			if err := json.Unmarshal(c.Data, &p); err != nil {
				panic(err)
			}
			out = append(out, string(c.Kind)+" "+p.State)
		}
	}
	return out
}

func pick(msgs []serverMessage, uid uint32) []serverMessage {
	for _, m := range msgs {
		if m.UID == uid {
			return []serverMessage{m}
		}
	}
	return nil
}

// TestUnselectableFolderIsSkipped makes one folder unreadable to Dovecot: the sync succeeds,
// names the folder in its final phase, and syncs the others.
func TestUnselectableFolderIsSkipped(t *testing.T) {
	t.Parallel()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	c := d.Client(t, u)
	c.CreateFolder("Broken")
	c.CreateFolder("Fine")
	c.AddMessage("Fine", []byte(unparseable))
	c.AddMessage("INBOX", []byte(unparseable))
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: "."}
	broken := filepath.Join(d.MaildirPath(u), ".Broken")
	if err := os.Chmod(broken, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(broken, 0o755) })

	e := newEnv(t, "sqlite", srv, syncer.Options{})
	tk := e.syncOK(t, false)
	t.Logf("final phase: %s", tk.Progress.Phase)
	if !strings.Contains(tk.Progress.Phase, `"Broken"`) {
		t.Errorf("final phase %q does not name the skipped folder", tk.Progress.Phase)
	}
	got := e.storeState(t)
	if len(got["Fine"]) != 1 || len(got["INBOX"]) != 1 {
		t.Errorf("the readable folders were not synced: %v", got)
	}
}

// TestCancelStopsSync cancels a running sync: the task ends cancelled, soon, with its committed
// batches kept.
func TestCancelStopsSync(t *testing.T) {
	t.Parallel()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	d.WriteMailgen(t, u, mailgen.Options{Seed: 6, Messages: 1000})
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: "."}
	warm(t, srv)
	var (
		e    *env
		seen atomic.Int64
		ids  = make(chan string, 1)
	)
	e = newEnv(t, "sqlite", srv, syncer.Options{BatchMessages: 20, Fetched: func(string, uint32) {
		if seen.Add(1) == 100 {
			if _, err := e.tasks.Cancel(context.Background(), <-ids); err != nil {
				t.Error(err)
			}
		}
		if seen.Load() > 100 {
			time.Sleep(time.Millisecond) // a slow server: the cancel must not wait for the end
		}
	}})
	tk, _, err := e.tasks.Start(context.Background(), e.acct.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	ids <- tk.ID
	tk = e.wait(t, tk.ID)
	if tk.State != task.Cancelled {
		t.Fatalf("task %s (%s), want cancelled", tk.State, tk.Error)
	}
	if n := e.storedCount(t); n == 0 || n >= 1000 {
		t.Errorf("%d messages stored by the cancelled sync; want the batches before the cancel", n)
	}
	if got := syncEnds(changestest.Check(t, e.store, e.acct.ID)); !slices.Equal(got, []string{"sync.failed cancelled"}) {
		t.Errorf("task ends in the change log: %q", got)
	}
}

// TestPoisonMessageIsSkipped serves one message whose FETCH response go-imap cannot parse (it
// closes the connection on it): the sync still succeeds, with every other message, names the one
// it skipped, and the next sync does not trip on it again.
func TestPoisonMessageIsSkipped(t *testing.T) {
	t.Parallel()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	c := d.Client(t, u)
	var poison uint32
	for i := range 20 {
		uid := c.AddMessage("INBOX", mailgen.Message(9, i))
		if i == 6 {
			poison = uid
		}
	}
	direct := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: "."}
	p := startProxy(t, d.Addr())
	p.poison = fmt.Sprintf("UID %d ", poison)
	viaProxy := direct
	viaProxy.port = p.port()

	e := newEnv(t, "sqlite", viaProxy, syncer.Options{BatchMessages: 4})
	tk := e.syncOK(t, false)
	t.Logf("final phase: %s", tk.Progress.Phase)
	if !strings.Contains(tk.Progress.Phase, fmt.Sprintf("message UID %d of \"INBOX\"", poison)) {
		t.Errorf("final phase %q does not name the skipped message", tk.Progress.Phase)
	}
	e.srv = direct
	want := e.serverState(t)
	var inbox []serverMessage
	for _, m := range want["INBOX"] {
		if m.UID != poison {
			inbox = append(inbox, m)
		}
	}
	want["INBOX"] = inbox
	if diff := compareStates(want, e.storeState(t)); diff != "" {
		t.Fatalf("store differs from the server, the poison message aside:\n%s", diff)
	}
	before := e.fetched.Load()
	if tk := e.syncOK(t, false); tk.Progress.New != 0 || e.fetched.Load() != before {
		t.Errorf("the next sync downloaded %d bodies (%d new); want none", e.fetched.Load()-before, tk.Progress.New)
	}
}

// TestBrokenConnectionIsResumedInRun drops the connection once in the middle of a body: the sync
// dials again, goes on from its last batch and succeeds, downloading nothing twice.
func TestBrokenConnectionIsResumedInRun(t *testing.T) {
	t.Parallel()
	const total = 300
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	d.WriteMailgen(t, u, mailgen.Options{Seed: 8, Messages: total})
	direct := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: "."}
	warm(t, direct)
	p := startProxy(t, d.Addr())
	p.cutAfter.Store(1 << 20)
	viaProxy := direct
	viaProxy.port = p.port()

	e := newEnv(t, "sqlite", viaProxy, syncer.Options{BatchMessages: 10})
	tk := e.syncOK(t, false)
	if tk.Progress.New != total || e.fetched.Load() != total {
		t.Errorf("new %d, downloaded %d; want %d and %d", tk.Progress.New, e.fetched.Load(), total, total)
	}
	e.srv = direct
	e.assertMirrors(t)
	changestest.Check(t, e.store, e.acct.ID)
}
