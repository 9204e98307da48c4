package httpapi_test

import (
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/smtptest"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
)

// useSMTP points the account at srv (STARTTLS, AUTH PLAIN with the account's login) through the
// API, which tests the login first.
func (mb *mailbox) useSMTP(t *testing.T, srv *smtptest.Server) {
	t.Helper()
	mb.e.request(mb.e.alice, "PUT", fmt.Sprintf("/api/accounts/%d/smtp", mb.account.ID),
		map[string]any{"host": "127.0.0.1", "port": srv.Port(), "tls_mode": "starttls"}).want(t, 200)
}

func (mb *mailbox) newSMTP(t *testing.T, opts ...smtptest.Option) *smtptest.Server {
	t.Helper()
	return smtptest.Start(t, append([]smtptest.Option{smtptest.WithUser(mb.user.Login, mb.user.Password)}, opts...)...)
}

// TestSendReply: a reply sent through the API reaches the SMTP server once, well-formed, with
// exactly the recipients given (Bcc in the envelope only), and its copy lands in Sent on Dovecot.
func TestSendReply(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		mb := newMailbox(t, dialect, "one")
		mb.server.CreateFolder("Sent")
		srv := mb.newSMTP(t)
		// A wrong SMTP server is refused before it is stored.
		mb.e.request(mb.e.alice, "PUT", fmt.Sprintf("/api/accounts/%d/smtp", mb.account.ID),
			map[string]any{"host": "127.0.0.1", "port": smtptest.Start(t).Port(), "tls_mode": "starttls"}).wantProblem(t, 422)
		mb.useSMTP(t, srv)
		orig := mb.bySubject(t)["one"]

		sent := mb.waitAction(t, mb.act(t, "POST", fmt.Sprintf("/api/accounts/%d/send", mb.account.ID), map[string]any{
			"from": "Carol <carol@example.test>", "to": []string{"Dora <dora@example.test>"}, "cc": []string{"eve@example.test"},
			"bcc": []string{"frank@example.test"}, "subject": "Re: one — réponse", "text": "Thanks.\n", "reply_to": orig.ID,
		}).ID)
		if sent.State != "done" || sent.Error != "" || !strings.HasPrefix(sent.Result.SMTP, "250") || sent.Result.Appended == nil {
			t.Fatalf("send = %+v", sent)
		}
		got := srv.Messages()
		if len(got) != 1 {
			t.Fatalf("the SMTP server received %d messages, want 1", len(got))
		}
		rcpts := slices.Clone(got[0].Rcpts)
		slices.Sort(rcpts)
		if !slices.Equal(rcpts, []string{"dora@example.test", "eve@example.test", "frank@example.test"}) || got[0].From != "carol@example.test" ||
			got[0].Authed != mb.user.Login {
			t.Fatalf("envelope = from %q to %v (authed %q)", got[0].From, got[0].Rcpts, got[0].Authed)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(got[0].Data))
		if err != nil {
			t.Fatalf("the message does not parse: %v\n%s", err, got[0].Data)
		}
		h := msg.Header
		if h.Get("Message-Id") != sent.MessageID || h.Get("In-Reply-To") != "<m0@example.test>" || h.Get("Bcc") != "" ||
			!strings.Contains(h.Get("To"), "dora@example.test") || !strings.Contains(h.Get("Cc"), "eve@example.test") {
			t.Fatalf("header = %v", h)
		}
		if subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); err != nil || subject != "Re: one — réponse" {
			t.Fatalf("subject = %q (%v)", h.Get("Subject"), err)
		}
		copies := mb.server.Messages("Sent")
		if len(copies) != 1 || copies[0].MessageID != sent.MessageID || !slices.Contains(copies[0].Flags, `\Seen`) {
			t.Fatalf("Sent holds %+v, want the one copy of %s", copies, sent.MessageID)
		}
	})
}

// TestSendRefusesInjection: CR or LF in a header field or an address is refused with a 422, and
// nothing is stored or sent.
func TestSendRefusesInjection(t *testing.T) {
	mb := newMailbox(t, "sqlite")
	srv := mb.newSMTP(t)
	mb.useSMTP(t, srv)
	path := fmt.Sprintf("/api/accounts/%d/send", mb.account.ID)
	for _, body := range []map[string]any{
		{"to": []string{"dora@example.test"}, "subject": "hi\r\nBcc: mallory@example.test"},
		{"to": []string{"dora@example.test\r\nRCPT TO:<mallory@example.test>"}, "subject": "hi"},
		{"to": []string{"Dora\n <dora@example.test>"}, "subject": "hi"},
		{"from": "carol@example.test\nBcc: mallory@example.test", "to": []string{"dora@example.test"}},
		{"to": []string{"dora@example.test"}, "in_reply_to": "<a@b>\r\nX-Evil: 1"},
		{"to": []string{"dora@example.test"}, "attachments": []map[string]any{{"filename": "a\r\n.txt", "content": "aGk="}}},
		{"to": []string{"not an address"}},
		{"subject": "nobody"},
	} {
		if body["from"] == nil {
			body["from"] = "carol@example.test" // what is refused is the injection, not a missing sender
		}
		mb.e.request(mb.e.alice, "POST", path, body).wantProblem(t, 422)
	}
	var all struct {
		Actions []httpapi.ActionJSON `json:"actions"`
	}
	mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/accounts/%d/actions", mb.account.ID), nil).want(t, 200).json(t, &all)
	if len(all.Actions) != 0 || srv.Transactions() != 0 {
		t.Fatalf("refused sends stored %d actions and made %d SMTP transactions", len(all.Actions), srv.Transactions())
	}
}

// TestSendIdempotencyKey: 100 concurrent sends with one Idempotency-Key make one action and one
// SMTP transaction.
func TestSendIdempotencyKey(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		mb := newMailbox(t, dialect)
		srv := mb.newSMTP(t)
		mb.useSMTP(t, srv)
		path := fmt.Sprintf("/api/accounts/%d/send", mb.account.ID)
		body := map[string]any{"from": "carol@example.test", "to": []string{"dora@example.test"}, "subject": "once", "text": "only once"}
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[int64]bool{}
		)
		for range 100 {
			wg.Go(func() {
				r := mb.e.request(mb.e.alice, "POST", path, body, "Idempotency-Key", "send-once")
				if r.StatusCode != 202 {
					t.Errorf("status %d: %s", r.StatusCode, r.body)
					return
				}
				var a httpapi.ActionJSON
				r.json(t, &a)
				mu.Lock()
				ids[a.ID] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(ids) != 1 {
			t.Fatalf("100 sends with one key made actions %v", ids)
		}
		for id := range ids {
			if a := mb.waitAction(t, id); a.State != "done" {
				t.Fatalf("send: %s %q", a.State, a.Error)
			}
		}
		// The same key again, after the send, answers the same action and sends nothing.
		var again httpapi.ActionJSON
		mb.e.request(mb.e.alice, "POST", path, body, "Idempotency-Key", "send-once").want(t, 202).json(t, &again)
		if !ids[again.ID] || again.State != "done" {
			t.Fatalf("the key after the send = %+v", again)
		}
		if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
			t.Fatalf("sync: %s %s", tk.State, tk.Error)
		}
		if n := srv.Transactions(); n != 1 {
			t.Fatalf("%d SMTP transactions, want 1", n)
		}
	})
}

// TestSendFailures: a send whose connection breaks after the message was handed over is unknown,
// never sent again by itself; a 5xx fails with the server's words; a 4xx waits and retries.
func TestSendFailures(t *testing.T) {
	mb := newMailbox(t, "sqlite")
	path := fmt.Sprintf("/api/accounts/%d/send", mb.account.ID)
	send := func(subject string) httpapi.ActionJSON {
		return mb.act(t, "POST", path, map[string]any{"from": "carol@example.test", "to": []string{"dora@example.test"}, "subject": subject})
	}

	dropping := mb.newSMTP(t, smtptest.WithDropAfterData())
	mb.useSMTP(t, dropping)
	unknown := mb.waitAction(t, send("dropped").ID)
	if unknown.State != "unknown" || !strings.Contains(unknown.Error, "may or may not") {
		t.Fatalf("a send dropped after DATA = %s %q", unknown.State, unknown.Error)
	}
	for range 2 {
		if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
			t.Fatalf("sync: %s %s", tk.State, tk.Error)
		}
	}
	if n := dropping.DataCommands(); n != 1 {
		t.Fatalf("an unknown send was handed over %d times, want once", n)
	}

	refusing := mb.newSMTP(t, smtptest.WithDataReply(554, "5.7.1 Message rejected as spam"))
	mb.useSMTP(t, refusing)
	failed := mb.waitAction(t, send("refused").ID)
	if failed.State != "failed" || !strings.Contains(failed.Error, "rejected as spam") {
		t.Fatalf("a send refused with 554 = %s %q", failed.State, failed.Error)
	}

	busy := mb.newSMTP(t, smtptest.WithRcptReply("dora@example.test", 451, "4.3.0 Try again later"))
	mb.useSMTP(t, busy)
	a := send("later")
	deadline := time.Now().Add(20 * time.Second)
	for {
		mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/actions/%d", a.ID), nil).want(t, 200).json(t, &a)
		if a.Attempts > 0 && a.State == "pending" {
			break
		}
		if time.Now().After(deadline) || !slices.Contains([]string{"pending", "running"}, a.State) {
			t.Fatalf("a send refused with 451 = %+v, want pending again with a retry time", a)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.NextAttemptAt == nil || !a.NextAttemptAt.After(time.Now()) || !strings.Contains(a.Error, "Try again later") {
		t.Fatalf("a send held back = %+v", a)
	}
	// Its owner may cancel it meanwhile.
	mb.e.request(mb.e.alice, "DELETE", fmt.Sprintf("/api/actions/%d", a.ID), nil).want(t, 200)
	// An unknown send is its owner's to retry.
	var retried httpapi.ActionJSON
	mb.useSMTP(t, mb.newSMTP(t))
	mb.e.request(mb.e.alice, "POST", fmt.Sprintf("/api/actions/%d/retry", unknown.ID), nil).want(t, 202).json(t, &retried)
	if done := mb.waitAction(t, retried.ID); done.State != "done" {
		t.Fatalf("the retried unknown send = %s %q", done.State, done.Error)
	}
}

// TestSMTPServerOfAMemberIsUnderThePolicy: an SMTP server a non-admin user sets is under the
// operator's destination policy, even on an account the operator made (not restricted): loopback
// is refused, and the answer says only that it was refused.
func TestSMTPServerOfAMemberIsUnderThePolicy(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *instance.Config) {
		c.Login = syncer.New(c.Store, boxOf(t, c), syncer.Options{}) // the default policy: no loopback
	})
	srv := smtptest.Start(t, smtptest.WithUser("bob", imapPassword), smtptest.WithInsecureAuth())
	a := e.storeAccount(t, e.alice, "127.0.0.1", 143, imapPassword, false)
	r := e.request(e.alice, "PUT", fmt.Sprintf("/api/accounts/%d/smtp", a.ID),
		map[string]any{"host": "127.0.0.1", "port": srv.Port(), "tls_mode": "none"})
	r.wantProblem(t, 422)
	if d := problemDetail(t, r); !strings.Contains(d, "could not be reached") || strings.Contains(d, "refused by the destination policy: 127") {
		t.Fatalf("detail = %q", d)
	}
	if srv.AuthAttempts() != 0 {
		t.Fatal("the refused server was logged in to")
	}
	// The operator (an administrator) may point an account at loopback.
	adminAcct := e.storeAccount(t, e.admin, "127.0.0.1", 143, imapPassword, false)
	e.request(e.admin, "PUT", fmt.Sprintf("/api/accounts/%d/smtp", adminAcct.ID),
		map[string]any{"host": "127.0.0.1", "port": srv.Port(), "tls_mode": "none"}).want(t, 200)
}

// TestDrafts: a draft is appended to Drafts with \Draft (no recipient needed); a draft that
// replaces it is saved, then the old one is removed.
func TestDrafts(t *testing.T) {
	mb := newMailbox(t, "sqlite")
	mb.server.CreateFolder("Drafts")
	if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
		t.Fatalf("sync: %s %s", tk.State, tk.Error)
	}
	path := fmt.Sprintf("/api/accounts/%d/drafts", mb.account.ID)
	first := mb.waitAction(t, mb.act(t, "POST", path, map[string]any{"from": "carol@example.test", "subject": "draft one", "text": "first"}).ID)
	if first.State != "done" || first.Result.Appended == nil || first.Result.Appended.Folder != "Drafts" {
		t.Fatalf("draft = %+v", first)
	}
	drafts := mb.server.Messages("Drafts")
	if len(drafts) != 1 || drafts[0].MessageID != first.MessageID || !slices.Contains(drafts[0].Flags, `\Draft`) {
		t.Fatalf("Drafts holds %+v", drafts)
	}
	if tk := mb.e.syncToEnd(t, mb.e.alice, mb.account.ID); tk.State != "succeeded" {
		t.Fatalf("sync: %s %s", tk.State, tk.Error)
	}
	old := mb.bySubject(t)["draft one"]
	second := mb.waitAction(t, mb.act(t, "POST", path, map[string]any{"from": "carol@example.test", "to": []string{"dora@example.test"},
		"subject": "draft two", "text": "second", "replaces": old.ID}).ID)
	if second.State != "done" || second.Replaces != old.ID {
		t.Fatalf("the replacing draft = %+v", second)
	}
	drafts = mb.server.Messages("Drafts")
	if len(drafts) != 1 || drafts[0].MessageID != second.MessageID {
		t.Fatalf("Drafts after the replacement holds %+v, want only %s", drafts, second.MessageID)
	}
	// A send cannot replace anything; a draft cannot replace another account's message.
	mb.e.request(mb.e.alice, "POST", fmt.Sprintf("/api/accounts/%d/send", mb.account.ID),
		map[string]any{"from": "carol@example.test", "to": []string{"dora@example.test"}, "replaces": old.ID}).wantProblem(t, 422)
	mb.e.request(mb.e.alice, "POST", path, map[string]any{"from": "carol@example.test", "replaces": 999999}).wantProblem(t, 422)
}

// TestAccountWithSMTP: POST /api/accounts takes the SMTP server with the account, tested first
// (a refusal saves nothing); left out, the usual submission server is tried and, when none
// answers, the account is added without one.
func TestAccountWithSMTP(t *testing.T) {
	mb := newMailbox(t, "sqlite") // its account: no SMTP server answers on 127.0.0.1:587
	mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/accounts/%d/smtp", mb.account.ID), nil).wantProblem(t, 404)
	srv := mb.newSMTP(t)
	add := func(name string, port int) response {
		return mb.e.request(mb.e.alice, "POST", "/api/accounts", map[string]any{
			"name": name, "imap_host": mb.dovecot.Host(), "imap_port": mb.dovecot.Port(), "tls_mode": "none",
			"login": mb.user.Login, "password": mb.user.Password, "tls_skip_verify": true,
			"smtp": map[string]any{"host": "127.0.0.1", "port": port, "tls_mode": "starttls"},
		})
	}
	add("refused", smtptest.Start(t).Port()).wantProblem(t, 422)
	var a httpapi.AccountJSON
	add("sends", srv.Port()).want(t, 201).json(t, &a)
	var got httpapi.SMTPJSON
	mb.e.request(mb.e.alice, "GET", fmt.Sprintf("/api/accounts/%d/smtp", a.ID), nil).want(t, 200).json(t, &got)
	if got.Port != srv.Port() || got.TLSMode != "starttls" {
		t.Fatalf("stored SMTP = %+v", got)
	}
	var list []httpapi.AccountJSON
	mb.e.request(mb.e.alice, "GET", "/api/accounts", nil).want(t, 200).json(t, &list)
	if len(list) != 2 {
		t.Fatalf("%d accounts, want 2 (the refused one saved nothing)", len(list))
	}
}
