package syncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/changes/changestest"
	"mailsync/internal/compose"
	"mailsync/internal/imaptest"
	"mailsync/internal/memimap"
	"mailsync/internal/smtptest"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
)

// TestKilledPushAppliesEachActionOnce kills the sync process three times, each time right after an
// action was applied on the server and before that was recorded (the worst moment). The next
// process applies every pending action exactly once: no message moved twice or lost, no draft
// appended twice, and the store mirrors the server at the end.
func TestKilledPushAppliesEachActionOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		const messages = 6
		d := imaptest.StartDovecot(t)
		u := d.AddUser(t, "bob", "secret-pw")
		cl := d.Client(t, u)
		cl.CreateFolder("Archive")
		cl.CreateFolder("Drafts")
		for i := range messages {
			cl.AddMessage("INBOX", []byte(fmt.Sprintf("From: a@example.test\r\nSubject: m%d\r\nMessage-ID: <m%d@example.test>\r\n\r\nbody %d\r\n", i, i, i)))
		}
		srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: ".", hasCondStore: true}
		dsn := storetest.DSN(t, dialect)
		e, key := newAccount(t, dsn, srv)
		ctx := context.Background()
		e.runProcess(t, dsn, key, "")

		// Alternating actions: a move of one message, a draft.
		refs, _, err := e.store.Messages(ctx, store.MessageQuery{AccountID: e.acct.ID, Limit: 100})
		if err != nil || len(refs) != messages {
			t.Fatalf("stored %d messages (%v), want %d", len(refs), err, messages)
		}
		var drafts []string
		for i, m := range refs {
			if _, _, err := e.store.CreateAction(ctx, action.New{AccountID: e.acct.ID, UserID: e.acct.UserID, Kind: action.Move,
				Request: action.Request{Messages: []int64{m.ID}, Folder: "Archive"}}); err != nil {
				t.Fatal(err)
			}
			msg, err := compose.Compose(compose.Draft{From: "bob@example.test", Subject: fmt.Sprintf("draft %d", i), Text: "draft"}, compose.Options{Draft: true})
			if err != nil {
				t.Fatal(err)
			}
			drafts = append(drafts, msg.MessageID)
			if _, _, err := e.store.CreateAction(ctx, action.Composed(action.Draft, e.acct.ID, e.acct.UserID, "", msg, "", 0, nil)); err != nil {
				t.Fatal(err)
			}
		}
		e.runProcess(t, dsn, key, "4") // killed after its 4th action: a draft
		e.runProcess(t, dsn, key, "3") // killed after its 3rd: the retried draft, a move, then this draft
		e.runProcess(t, dsn, key, "2") // killed after its 2nd: the retried draft, then a move
		e.runProcess(t, dsn, key, "")

		open, err := e.store.OpenActions(ctx, e.acct.ID)
		if err != nil || len(open) != 0 {
			t.Fatalf("open actions after the last run: %+v (%v)", open, err)
		}
		all, err := e.store.AccountActions(ctx, e.acct.ID, false, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range all {
			if a.State != action.Done {
				t.Errorf("action %d (%s) ended %s: %s", a.ID, a.Kind, a.State, a.Error)
			}
		}
		byID := func(folder string) []string {
			var ids []string
			for _, m := range cl.Messages(folder) {
				ids = append(ids, m.MessageID)
			}
			slices.Sort(ids)
			return ids
		}
		var wantArchive []string
		for i := range messages {
			wantArchive = append(wantArchive, fmt.Sprintf("<m%d@example.test>", i))
		}
		slices.Sort(drafts)
		if got := byID("Archive"); !slices.Equal(got, wantArchive) {
			t.Errorf("Archive holds %v, want each message once: %v", got, wantArchive)
		}
		if got := byID("INBOX"); len(got) != 0 {
			t.Errorf("INBOX still holds %v", got)
		}
		if got := byID("Drafts"); !slices.Equal(got, drafts) {
			t.Errorf("Drafts holds %v, want each draft once: %v", got, drafts)
		}
		e.assertMirrors(t)
		// The change log, replayed from the start, gives the store: the local moves included.
		changestest.Check(t, e.store, e.acct.ID)
	})
}

func TestFromExcept(t *testing.T) {
	for _, tc := range []struct {
		from uint32
		skip []uint32
		want string
	}{
		{10, nil, "10:*"},
		{10, []uint32{10}, "11:*"},
		{10, []uint32{12, 13, 20}, "10:11,14:19,21:*"},
		{10, []uint32{11}, "10,12:*"},
	} {
		if got := syncer.FromExcept(tc.from, tc.skip).String(); got != tc.want {
			t.Errorf("fromExcept(%d, %v) = %s, want %s", tc.from, tc.skip, got, tc.want)
		}
	}
}

// runProcess starts the account's task and runs it in a sync process, which kills itself after
// applying its killAfter-th action when killAfter is set, else runs to the end.
func (e *env) runProcess(t *testing.T, dsn string, key []byte, killAfter string) {
	t.Helper()
	ctx := context.Background()
	var tk task.Task
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if tk, _, err = e.tasks.Start(ctx, e.acct.ID, false); err != nil {
			t.Fatal(err)
		}
		if tk.State == task.Queued {
			break // a new task: the last one ended, or was dead and replaced
		}
		if time.Now().After(deadline) {
			t.Fatalf("the account's task %s is still %s after 30 s", tk.ID, tk.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var env []string
	if killAfter != "" {
		env = append(env, helperKillApplied+"="+killAfter)
	}
	p := startSyncProcess(t, dsn, key, e.acct.ID, 100, env...)
	if killAfter == "" {
		if last, _ := p.finish(t); !strings.HasPrefix(last, "done succeeded") {
			t.Fatalf("sync process: %s", last)
		}
		return
	}
	var said string
	for line := range p.lines {
		said = line
	}
	<-p.exited
	_ = p.cmd.Wait()
	if !strings.HasPrefix(said, "killed after applying action") {
		t.Fatalf("the sync process ended without being killed; last said %q", said)
	}
	t.Log(said)
}

// TestActionsOnMemServer: the in-memory server has MOVE and UIDPLUS (IMAP4rev2) but no
// CONDSTORE: flags go out as plain deltas, moves follow COPYUID, a delete goes to Trash, and
// after the task the store mirrors the server.
func TestActionsOnMemServer(t *testing.T) {
	m := imaptest.StartMemServer(t, memimap.WithIMAP4rev2())
	u, err := m.AddUser("bob", "secret-pw")
	if err != nil {
		t.Fatal(err)
	}
	srv := server{host: m.Host(), port: m.Port(), login: u.Login, passwd: u.Password, delim: "/", describe: "memserver"}
	actionsScenario(t, srv, imaptest.DialClient(t, m.Addr(), imaptest.User(u)))
}

// TestActionsOnCyrus: the same on Cyrus IMAP, with CONDSTORE (every STORE carries
// UNCHANGEDSINCE), MOVE, UIDPLUS and OBJECTID.
func TestActionsOnCyrus(t *testing.T) {
	srv, c := startCyrus(t)
	actionsScenario(t, srv, c)
}

// actionsScenario applies a flags action, a move and a delete on srv through one task: each
// action ends done, the server holds what was asked, the store mirrors it, and nothing is
// downloaded again.
func actionsScenario(t *testing.T, srv server, cl *imaptest.Client) {
	ctx := context.Background()
	for _, f := range []string{"Archive", "Trash"} {
		cl.CreateFolder(f)
	}
	for i := range 3 {
		cl.AddMessage("INBOX", []byte(fmt.Sprintf("Subject: m%d\r\nMessage-ID: <m%d@example.test>\r\n\r\nbody\r\n", i, i)), `\Seen`)
	}
	e, key := newAccount(t, "sqlite:"+t.TempDir()+"/mailsync.db", srv)
	e.startWorker(t, key, syncer.Options{})
	if tk := e.sync(t, false); tk.State != task.Succeeded {
		t.Fatalf("first sync: %s %s", tk.State, tk.Error)
	}
	stored, _, err := e.store.Messages(ctx, store.MessageQuery{AccountID: e.acct.ID, Limit: 10})
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored %d (%v)", len(stored), err)
	}
	id := map[string]int64{}
	for _, msg := range stored {
		id[msg.Subject] = msg.ID
	}
	fetched := e.fetched.Load()
	for _, n := range []action.New{
		{Kind: action.Flags, Request: action.Request{Messages: []int64{id["m0"]}, Add: []string{`\Flagged`}, Remove: []string{`\Seen`}}},
		{Kind: action.Move, Request: action.Request{Messages: []int64{id["m1"]}, Folder: "Archive"}},
		{Kind: action.Delete, Request: action.Request{Messages: []int64{id["m2"]}}},
	} {
		n.AccountID, n.UserID = e.acct.ID, e.acct.UserID
		if _, _, err := e.store.CreateAction(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if tk := e.sync(t, false); tk.State != task.Succeeded {
		t.Fatalf("the task with the actions: %s %s", tk.State, tk.Error)
	}
	all, err := e.store.AccountActions(ctx, e.acct.ID, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.State != action.Done {
			t.Errorf("action %d (%s): %s %s", a.ID, a.Kind, a.State, a.Error)
		}
	}
	for folder, want := range map[string]string{"INBOX": "<m0@example.test> [\\Flagged]", "Archive": "<m1@example.test> [\\Seen]", "Trash": "<m2@example.test> [\\Seen]"} {
		msgs := cl.Messages(folder)
		if len(msgs) != 1 || fmt.Sprintf("%s %v", msgs[0].MessageID, msgs[0].Flags) != want {
			t.Errorf("%s holds %+v, want %s", folder, msgs, want)
		}
	}
	e.assertMirrors(t)
	if again := e.fetched.Load() - fetched; again != 0 {
		t.Errorf("%d bodies downloaded after the actions, want 0 (the moved messages follow COPYUID)", again)
	}
}

// TestKilledSendIsUnknown kills the sync process while the SMTP server holds its answer to a
// send's DATA: nobody knows whether the message went out, so the next task marks the send
// unknown and submits nothing, then the owner's retry sends it once more.
func TestKilledSendIsUnknown(t *testing.T) {
	ctx := context.Background()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	d.Client(t, u).CreateFolder("Sent")
	slow := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password), smtptest.WithInsecureAuth(), smtptest.WithReplyDelay(time.Minute))
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: ".", hasCondStore: true}
	dsn := "sqlite:" + t.TempDir() + "/mailsync.db"
	e, key := newAccount(t, dsn, srv)
	if err := e.store.SetAccountSMTP(ctx, e.acct.ID, store.SMTP{Host: "127.0.0.1", Port: slow.Port(), TLSMode: "none"}); err != nil {
		t.Fatal(err)
	}
	msg, err := compose.Compose(compose.Draft{From: "bob@example.test", To: []string{"dora@example.test"}, Subject: "once", Text: "hi"}, compose.Options{})
	if err != nil {
		t.Fatal(err)
	}
	send, _, err := e.store.CreateAction(ctx, action.Composed(action.Send, e.acct.ID, e.acct.UserID, "", msg, "once", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.tasks.Start(ctx, e.acct.ID, false); err != nil {
		t.Fatal(err)
	}
	p := startSyncProcess(t, dsn, key, e.acct.ID, 100)
	for deadline := time.Now().Add(30 * time.Second); slow.DataCommands() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the send never reached DATA")
		}
	}
	time.Sleep(50 * time.Millisecond) // the body is on its way; the answer is held
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	_ = p.cmd.Wait()

	e.runProcess(t, dsn, key, "")
	got, err := e.store.Action(ctx, send.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != action.Unknown || !strings.Contains(got.Error, "may or may not") {
		t.Fatalf("a send killed while awaiting its answer = %s %q, want unknown", got.State, got.Error)
	}
	if n := slow.DataCommands(); n != 1 {
		t.Fatalf("DATA was sent %d times, want once", n)
	}
	// The owner decides it did not go out: it is sent again, once, with the same Message-ID.
	fast := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password), smtptest.WithInsecureAuth())
	if err := e.store.SetAccountSMTP(ctx, e.acct.ID, store.SMTP{Host: "127.0.0.1", Port: fast.Port(), TLSMode: "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RetryAction(ctx, send.ID); err != nil {
		t.Fatal(err)
	}
	e.runProcess(t, dsn, key, "")
	if got, _ = e.store.Action(ctx, send.ID); got.State != action.Done {
		t.Fatalf("the retried send = %s %q", got.State, got.Error)
	}
	if received := fast.Messages(); len(received) != 1 || !strings.Contains(string(received[0].Data), msg.MessageID) {
		t.Fatalf("the retry delivered %d messages, want 1 with Message-ID %s", len(received), msg.MessageID)
	}
	if copies := d.Client(t, u).Messages("Sent"); len(copies) != 1 || copies[0].MessageID != msg.MessageID {
		t.Fatalf("Sent holds %+v, want one copy", copies)
	}
}

// TestSendWhoseSentCopyFailsIsNotSentAgain: the SMTP server takes the message, then the IMAP
// server freezes before the copy for Sent is appended, and the task fails. The send stays sent:
// the next task appends the copy and submits nothing.
func TestSendWhoseSentCopyFailsIsNotSentAgain(t *testing.T) {
	ctx := context.Background()
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "bob", "secret-pw")
	d.Client(t, u).CreateFolder("Sent")
	smtp := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password), smtptest.WithInsecureAuth(), smtptest.WithReplyDelay(300*time.Millisecond))
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: ".", hasCondStore: true}
	e, key := newAccount(t, "sqlite:"+t.TempDir()+"/mailsync.db", srv)
	e.startWorker(t, key, syncer.Options{CommandTimeout: time.Second})
	if tk := e.sync(t, false); tk.State != task.Succeeded {
		t.Fatalf("first sync: %s %s", tk.State, tk.Error)
	}
	if err := e.store.SetAccountSMTP(ctx, e.acct.ID, store.SMTP{Host: "127.0.0.1", Port: smtp.Port(), TLSMode: "none"}); err != nil {
		t.Fatal(err)
	}
	msg, err := compose.Compose(compose.Draft{From: "bob@example.test", To: []string{"dora@example.test"}, Subject: "once", Text: "hi"}, compose.Options{})
	if err != nil {
		t.Fatal(err)
	}
	send, _, err := e.store.CreateAction(ctx, action.Composed(action.Send, e.acct.ID, e.acct.UserID, "", msg, "once", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := e.tasks.Start(ctx, e.acct.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); smtp.DataCommands() == 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the send never reached DATA")
		}
	}
	d.Pause(t) // while the SMTP server holds its answer: the append that follows cannot be done
	failed := e.wait(t, tk.ID)
	d.Resume(t)
	if failed.State != task.Failed {
		t.Fatalf("the task whose IMAP server froze: %s %s", failed.State, failed.Error)
	}
	if got, _ := e.store.Action(ctx, send.ID); got.State != action.Sent || !strings.HasPrefix(got.Result.SMTP, "250") {
		t.Fatalf("after the frozen append the send is %s (%+v), want sent with the server's answer", got.State, got.Result)
	}
	if tk := e.sync(t, false); tk.State != task.Succeeded {
		t.Fatalf("the next task: %s %s", tk.State, tk.Error)
	}
	if got, _ := e.store.Action(ctx, send.ID); got.State != action.Done {
		t.Fatalf("the send after the next task: %s %q", got.State, got.Error)
	}
	if n := smtp.DataCommands(); n != 1 {
		t.Fatalf("DATA was sent %d times, want once", n)
	}
	if copies := d.Client(t, u).Messages("Sent"); len(copies) != 1 || copies[0].MessageID != msg.MessageID {
		t.Fatalf("Sent holds %+v, want one copy", copies)
	}
}
