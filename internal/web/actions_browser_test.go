package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailsync/internal/action"
	"mailsync/internal/imaptest"
	"mailsync/internal/secret"
	"mailsync/internal/smtptest"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// mailOnServer is one message a test puts on the IMAP server, found again by its Message-ID.
type mailOnServer struct {
	subject, messageID string
}

func (m mailOnServer) raw(from string) []byte {
	return []byte("From: " + from + "\r\nTo: hedy@example.test\r\nSubject: " + m.subject +
		"\r\nMessage-ID: " + m.messageID + "\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Hedy,\r\nthis is " + m.subject + ".\r\n")
}

// syncOnce runs one sync of the account to its end, as Sync now would.
func (st *stack) syncOnce(accountID int64) {
	st.t.Helper()
	ctx := context.Background()
	tk, _, err := st.tasks.Start(ctx, accountID, false)
	if err != nil {
		st.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, err := st.tasks.Get(ctx, tk.ID)
		if err != nil {
			st.t.Fatal(err)
		}
		if !cur.State.Active() {
			if cur.State != task.Succeeded {
				st.t.Fatalf("sync %s %s: %s", cur.ID, cur.State, cur.Error)
			}
			return
		}
		if time.Now().After(deadline) {
			st.t.Fatalf("sync %s still %s after 30 s", cur.ID, cur.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// folderID is the stored id of the account's folder by name.
func (st *stack) folderID(accountID int64, name string) int64 {
	st.t.Helper()
	fs, err := st.store.Folders(context.Background(), accountID)
	if err != nil {
		st.t.Fatal(err)
	}
	for _, f := range fs {
		if f.Name == name {
			return f.ID
		}
	}
	st.t.Fatalf("no folder %q stored", name)
	return 0
}

// openMessage goes to the account's list and opens the message with the subject.
func (p *page) openMessage(accountID int64, subject string) {
	p.t.Helper()
	p.do(chromedp.Navigate(fmt.Sprintf("%s/#/accounts/%d/messages", p.url, accountID)))
	find := fmt.Sprintf(`[...document.querySelectorAll('#message-list li')].find(li => li.querySelector('.subject').firstChild.textContent === %q)`, subject)
	p.waitFor("the message on the list", find, 15*time.Second)
	p.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#message-list li[data-message-id="%s"] a`,
		eval[string](p, find+`.dataset.messageId`)))))
	p.waitFor("the message", fmt.Sprintf(`document.querySelector('h1')?.textContent === %q && document.querySelector('button[data-action=seen]')`, subject), 15*time.Second)
}

const actionDone = `document.querySelector('.action-log li[data-state=done]') !== null && document.querySelector('[data-field=pending]').hidden`

// Actions on mail from the message view, on a real Dovecot: each button's action is shown
// pending at once (the message as the action will leave it), then done, and the server holds
// what the page says; a move the server refuses shows its reason.
func TestBrowserActionsOnDovecot(t *testing.T) {
	browser := newBrowser(t)
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "hedy", "hedy-imap-password")
	c := d.Client(t, u)
	for _, f := range []string{"Archive", "Trash", "Sent", "Old"} {
		c.CreateFolder(f)
	}
	readMe := mailOnServer{"Read me", "<read-me@example.test>"}
	moveMe := mailOnServer{"Move me", "<move-me@example.test>"}
	deleteMe := mailOnServer{"Delete me", "<delete-me@example.test>"}
	nowhere := mailOnServer{"Move me nowhere", "<nowhere@example.test>"}
	answerMe := mailOnServer{"Answer me", "<answer-me@example.test>"}
	for _, m := range []mailOnServer{readMe, moveMe, deleteMe, nowhere, answerMe} {
		c.AddMessage("INBOX", m.raw("Grace <grace@example.test>"))
	}

	sturdy := lifecycle()
	sturdy.HeartbeatInterval, sturdy.HeartbeatTimeout, sturdy.SelfFence = 500*time.Millisecond, 10*time.Second, 6*time.Second
	var st *stack
	st = newStackWith(t, sturdy, func(ctx context.Context, run *worker.Run) error {
		return syncer.New(st.store, st.box, syncer.Options{}).Run(ctx, run)
	}, imapLogin{})
	// The account submits to a real SMTP server with its IMAP login, over STARTTLS with the test
	// server's self-signed certificate.
	a := store.Account{UserID: st.user.ID, Name: "Hedy", IMAPHost: d.Host(), IMAPPort: d.Port(), TLSMode: "none",
		TLSSkipVerify: true, Login: u.Login}
	a.SecretEnc = st.box.Seal([]byte(u.Password), secret.AccountContext(a.Login, a.IMAPHost))
	acct, err := st.store.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	smtp := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password))
	if err := st.store.SetAccountSMTP(context.Background(), acct.ID, store.SMTP{Host: "127.0.0.1", Port: smtp.Port(), TLSMode: "starttls"}); err != nil {
		t.Fatal(err)
	}
	st.syncOnce(acct.ID)
	// Each subtest has its own tab: a page's context is bounded in time.
	open := func(t *testing.T, subject string) *page {
		t.Helper()
		p := newPage(t, browser, st.url)
		p.login()
		p.openMessage(acct.ID, subject)
		return p
	}

	t.Run("MarkRead", func(t *testing.T) {
		p := open(t, readMe.subject)
		if got := eval[string](p, `document.querySelector('button[data-action=seen]').textContent`); got != "Mark read" {
			t.Fatalf("an unread message offers %q", got)
		}
		st.stopWorker() // the action waits, pending, until a worker runs the account's task
		p.do(chromedp.Click(chromedp.CSS(`button[data-action=seen]`)))
		p.waitFor("the pending badge", `!document.querySelector('[data-field=pending]').hidden && document.querySelector('.action-log li[data-state=pending]') !== null`, 10*time.Second)
		if got := eval[string](p, `document.querySelector('button[data-action=seen]').textContent`); got != "Mark unread" {
			t.Errorf("while the action is pending the button says %q, want the message shown as read", got)
		}
		if !strings.Contains(eval[string](p, `document.querySelector('[data-field=flags]').textContent`), `\Seen`) {
			t.Error(`the pending message's flags do not show \Seen`)
		}
		if got := c.CopiesOf("INBOX", readMe.messageID); len(got) != 1 || slices.Contains(got[0], `\Seen`) {
			t.Fatalf("before a worker ran the action the server has %v, want the message unread", got)
		}
		p.screenshot("action-pending")
		st.startWorker()
		p.waitFor("the action done", actionDone, 30*time.Second)
		if got := c.CopiesOf("INBOX", readMe.messageID); len(got) != 1 || !slices.Contains(got[0], `\Seen`) {
			t.Fatalf("after the action the server has %v, want the message read", got)
		}
		if got := eval[string](p, `document.querySelector('button[data-action=seen]').textContent`); got != "Mark unread" {
			t.Errorf("a read message offers %q", got)
		}
		before := p.requests.Load()
		time.Sleep(2 * time.Second)
		if after := p.requests.Load(); after != before {
			t.Errorf("the page made %d requests after the action ended, want 0", after-before)
		}
	})

	t.Run("FlagThenUnflag", func(t *testing.T) {
		p := open(t, readMe.subject)
		done := func(n int) string {
			return fmt.Sprintf(`document.querySelectorAll('.action-log li[data-state=done]').length === %d && document.querySelector('[data-field=pending]').hidden`, n)
		}
		p.do(chromedp.Click(chromedp.CSS(`button[data-action=flag]`)))
		p.waitFor("the flag done", done(1), 30*time.Second)
		if got := c.CopiesOf("INBOX", readMe.messageID); len(got) != 1 || !slices.Contains(got[0], `\Flagged`) || !slices.Contains(got[0], `\Seen`) {
			t.Fatalf("after Flag the server has %v, want the message flagged and still read", got)
		}
		if got := eval[string](p, `document.querySelector('button[data-action=flag]').textContent`); got != "Unflag" {
			t.Fatalf("a flagged message offers %q", got)
		}
		p.do(chromedp.Click(chromedp.CSS(`button[data-action=flag]`)))
		p.waitFor("the unflag done", done(2), 30*time.Second)
		if got := c.CopiesOf("INBOX", readMe.messageID); len(got) != 1 || slices.Contains(got[0], `\Flagged`) {
			t.Fatalf("after Unflag the server has %v, want the message not flagged", got)
		}
	})

	t.Run("Move", func(t *testing.T) {
		p := open(t, moveMe.subject)
		p.do(chromedp.SetValue(chromedp.CSS(`select[name=move-to]`), "Archive"),
			chromedp.Click(chromedp.CSS(`button[data-action=move]`)))
		p.waitFor("the move done", actionDone, 30*time.Second)
		p.waitFor("the message shown in Archive", `document.querySelector('[data-field=folder]').textContent === 'Archive' || (document.querySelector('[data-field=gone]').textContent.includes('Moved to Archive') && !document.querySelector('[data-field=gone]').hidden)`, 10*time.Second)
		if got := c.CopiesOf("INBOX", moveMe.messageID); len(got) != 0 {
			t.Errorf("INBOX still holds the moved message (%d copies)", len(got))
		}
		if got := c.CopiesOf("Archive", moveMe.messageID); len(got) != 1 {
			t.Errorf("Archive holds %d copies of the moved message, want 1", len(got))
		}
		p.screenshot("action-moved")
	})

	t.Run("Delete", func(t *testing.T) {
		p := open(t, deleteMe.subject)
		p.do(chromedp.Click(chromedp.CSS(`button[data-action=delete]`)))
		p.waitFor("the delete done", actionDone, 30*time.Second)
		if got := c.CopiesOf("INBOX", deleteMe.messageID); len(got) != 0 {
			t.Errorf("INBOX still holds the deleted message (%d copies)", len(got))
		}
		if got := c.CopiesOf("Trash", deleteMe.messageID); len(got) != 1 {
			t.Errorf("Trash holds %d copies of the deleted message, want it moved there", len(got))
		}
		// The list leaves it out.
		p.do(chromedp.Navigate(fmt.Sprintf("%s/#/accounts/%d/messages?folder=%d", p.url, acct.ID, st.folderID(acct.ID, "INBOX"))))
		p.waitFor("the list", `document.querySelectorAll('#message-list li').length > 0`, 10*time.Second)
		if txt := eval[string](p, `document.querySelector('#message-list').innerText`); strings.Contains(txt, deleteMe.subject) {
			t.Errorf("INBOX's list still shows the deleted message:\n%s", txt)
		}
	})

	t.Run("MoveToAFolderGoneFromTheServerFailsInWords", func(t *testing.T) {
		c.DeleteFolder("Old") // behind mailsync's back: the page still offers it
		p := open(t, nowhere.subject)
		p.do(chromedp.SetValue(chromedp.CSS(`select[name=move-to]`), "Old"),
			chromedp.Click(chromedp.CSS(`button[data-action=move]`)))
		p.waitFor("the failure", `document.querySelector('.action-log li[data-state=failed], .action-log li[data-state=conflict]') !== null`, 30*time.Second)
		li := `document.querySelector('.action-log li')`
		id := eval[string](p, li+`.dataset.actionId`)
		actionErr, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch('/api/actions/%s').then(r => r.json()).then(a => a.error)`, id), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		shown := eval[string](p, li+`.textContent`)
		if actionErr == "" || !strings.Contains(shown, actionErr) {
			t.Errorf("the page says %q; the action's error is %q", shown, actionErr)
		}
		if eval[bool](p, li+`.querySelector('button[data-action=retry]') === null`) {
			t.Error("a failed action offers no Retry")
		}
		if got := c.CopiesOf("INBOX", nowhere.messageID); len(got) != 1 {
			t.Errorf("INBOX holds %d copies of the message whose move failed, want 1", len(got))
		}
		p.screenshot("action-failed")
	})

	t.Run("ReplyWhoseAnswerIsLostIsSentOnce", func(t *testing.T) {
		// The first answer to the send is lost on its way back (a proxy's 502 after the server
		// stored the action): the page cannot know, says so, and its Try again sends the same
		// request under the same Idempotency-Key, which the server answers with the same action.
		var keys []string
		lose := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/send") {
				next.ServeHTTP(w, r)
				return
			}
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			if len(keys) > 1 {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "the upstream answer was lost", http.StatusBadGateway)
		}
		st.around.Store(&lose)
		defer st.around.Store(nil)

		p := open(t, answerMe.subject)
		p.do(chromedp.Click(chromedp.CSS(`a[data-action=reply]`)))
		p.waitFor("the reply form", `document.querySelector('#compose-form textarea[name=text]') !== null`, 10*time.Second)
		if to := eval[string](p, `document.querySelector('#compose-form [name=to]').value`); !strings.Contains(to, "grace@example.test") {
			t.Errorf("the reply goes to %q, want the sender", to)
		}
		if subject := eval[string](p, `document.querySelector('#compose-form [name=subject]').value`); subject != "Re: Answer me" {
			t.Errorf("the reply's subject is %q", subject)
		}
		quoted := eval[string](p, `document.querySelector('#compose-form [name=text]').value`)
		if !strings.Contains(quoted, "> this is Answer me.") {
			t.Errorf("the reply does not quote the message:\n%s", quoted)
		}
		// The account's login is no address: the form asks for one.
		if !eval[bool](p, `document.querySelector('#compose-form [name=from]').required`) {
			t.Error("the form does not ask for a From address though the account's login is none")
		}
		p.do(chromedp.SetValue(chromedp.CSS(`#compose-form [name=from]`), "Hedy <hedy@example.test>"),
			chromedp.SetValue(chromedp.CSS(`#compose-form [name=text]`), "Thanks, Grace.\n"+quoted))
		// A double click is one request.
		eval[any](p, `{ const b = document.querySelector('#compose-form button[data-action=send]'); b.click(); b.click(); null }`)
		p.waitFor("the lost answer", `!document.querySelector('#compose-form [data-field=error]').hidden`, 10*time.Second)
		if msg := eval[string](p, `document.querySelector('#compose-form [data-field=error]').textContent`); !strings.Contains(msg, "Perhaps not sent") {
			t.Errorf("after a lost answer the form says %q", msg)
		}
		if label := eval[string](p, `document.querySelector('#compose-form button[data-action=send]').textContent`); label != "Try again" {
			t.Errorf("after a lost answer the button says %q", label)
		}
		p.screenshot("reply-answer-lost")
		p.do(chromedp.Click(chromedp.CSS(`#compose-form button[data-action=send]`)))
		p.waitFor("the reply sent", `document.querySelector('#compose-form').dataset.state === 'done'`, 30*time.Second)
		if got := eval[string](p, `document.querySelector('#compose-form [data-field=send-status]').textContent`); !strings.Contains(got, "Sent.") {
			t.Errorf("the form says %q once it was sent", got)
		}
		p.screenshot("reply-sent")

		if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
			t.Fatalf("the two tries carried the Idempotency-Keys %q, want one key twice", keys)
		}
		got := smtp.Messages()
		if len(got) != 1 {
			t.Fatalf("the SMTP server received %d messages, want 1", len(got))
		}
		if !slices.Equal(got[0].Rcpts, []string{"grace@example.test"}) || got[0].From != "hedy@example.test" {
			t.Errorf("the reply was submitted from %q to %v", got[0].From, got[0].Rcpts)
		}
		data := string(got[0].Data)
		for _, want := range []string{"In-Reply-To: " + answerMe.messageID, "Subject: Re: Answer me", "Thanks, Grace."} {
			if !strings.Contains(data, want) {
				t.Errorf("the submitted message lacks %q:\n%s", want, data)
			}
		}
		var sends []action.Action
		all, err := st.store.AccountActions(context.Background(), acct.ID, false, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range all {
			if a.Kind == action.Send {
				sends = append(sends, a)
			}
		}
		if len(sends) != 1 {
			t.Fatalf("%d send actions stored, want 1", len(sends))
		}
		if copies := c.CopiesOf("Sent", sends[0].Request.MessageID); len(copies) != 1 || !slices.Contains(copies[0], `\Seen`) {
			t.Errorf("Sent holds %v of the reply, want one copy, read", copies)
		}
	})

	t.Run("NewMessageRefusedThenSent", func(t *testing.T) {
		before := len(smtp.Messages())
		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Navigate(fmt.Sprintf("%s/#/accounts/%d/messages", p.url, acct.ID)))
		p.waitFor("the list", `document.querySelector('a[data-action=compose]') !== null`, 10*time.Second)
		// The move that failed earlier is listed on the account's page, in words, with Retry.
		failed := `document.querySelector('[data-field=recent-actions] li[data-state=failed]')`
		p.waitFor("the failed move among the recent actions", failed+` !== null`, 10*time.Second)
		if txt := eval[string](p, failed+`.textContent`); !strings.Contains(txt, "Move to Old failed") || !strings.Contains(txt, "Retry") {
			t.Errorf("the recent actions say %q, want the failed move with Retry", txt)
		}
		p.screenshot("messages-recent-actions")
		p.do(chromedp.Click(chromedp.CSS(`a[data-action=compose]`)))
		p.waitFor("the form", `document.querySelector('#compose-form [name=to]') !== null`, 10*time.Second)
		firstKey := eval[string](p, `document.querySelector('#compose-form').dataset.idempotencyKey`)
		p.do(chromedp.SetValue(chromedp.CSS(`#compose-form [name=from]`), "hedy@example.test"),
			chromedp.SetValue(chromedp.CSS(`#compose-form [name=to]`), "grace at example"),
			chromedp.SetValue(chromedp.CSS(`#compose-form [name=subject]`), "Lunch?"),
			chromedp.SetValue(chromedp.CSS(`#compose-form [name=text]`), "Noon at the usual place?\n"),
			chromedp.Click(chromedp.CSS(`#compose-form button[data-action=send]`)))
		p.waitFor("the refusal", `!document.querySelector('#compose-form [data-field=error]').hidden`, 10*time.Second)
		msg := eval[string](p, `document.querySelector('#compose-form [data-field=error]').textContent`)
		if !strings.Contains(msg, "Not sent") || !strings.Contains(msg, "to") {
			t.Errorf("a refused address says %q, want Not sent and the field", msg)
		}
		if eval[bool](p, `document.querySelector('#compose-form fieldset').disabled`) {
			t.Fatal("the fields stay locked after a refusal: nothing can be corrected")
		}
		if key := eval[string](p, `document.querySelector('#compose-form').dataset.idempotencyKey`); key == firstKey || key == "" {
			t.Errorf("the corrected message would go under the refused request's key %q", key)
		}
		p.do(chromedp.SetValue(chromedp.CSS(`#compose-form [name=to]`), "grace@example.test"),
			chromedp.Click(chromedp.CSS(`#compose-form button[data-action=send]`)))
		p.waitFor("sent", `document.querySelector('#compose-form').dataset.state === 'done'`, 30*time.Second)
		got := smtp.Messages()
		if len(got) != before+1 || !slices.Equal(got[len(got)-1].Rcpts, []string{"grace@example.test"}) {
			t.Fatalf("the SMTP server has %d messages (had %d); want one more, to grace", len(got), before)
		}
	})
}
