package web_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// imapLogin tests credentials against the real server, as `mailsync serve` does.
type imapLogin struct{}

func (imapLogin) CheckLogin(ctx context.Context, a store.Account, password string) error {
	conn, err := imapconn.Dial(ctx, imapconn.Config{Host: a.IMAPHost, Port: a.IMAPPort,
		TLS: imapconn.TLSMode(a.TLSMode), Login: a.Login, Password: password})
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// serverCounts asks the IMAP server how many messages each folder holds. It also warms
// Dovecot's indexes, which it builds at the first access.
func serverCounts(t *testing.T, d *imaptest.Dovecot, u imaptest.User) map[string]int {
	t.Helper()
	return d.Client(t, u).FolderCounts()
}

// The whole path on a real IMAP server: add the account in the UI (its login tested), storm
// Sync now, watch the bar move to 100 %, compare the page's numbers with the server's, then
// browse the copied mail.
func TestBrowserOnDovecot(t *testing.T) {
	browser := newBrowser(t)
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "grace", "grace-imap-password")
	const messages = 6000
	if st := d.WriteMailgen(t, u, mailgen.Options{Seed: 11, Messages: messages, Folders: mailgen.DefaultFolders()}); st.Messages != messages {
		t.Fatalf("wrote %d messages, want %d", st.Messages, messages)
	}
	counts := serverCounts(t, d, u)
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != messages || len(counts) != len(mailgen.DefaultFolders()) {
		t.Fatalf("the server holds %d messages in %d folders, want %d in %d", total, len(counts), messages, len(mailgen.DefaultFolders()))
	}

	// A real sync on a busy machine can go longer than lifecycle's 1.2 s between two writes, and
	// the page's stream reaps a task it sees dead: this one gets seconds.
	sturdy := lifecycle()
	sturdy.HeartbeatInterval, sturdy.HeartbeatTimeout, sturdy.SelfFence = 500*time.Millisecond, 10*time.Second, 6*time.Second
	var st *stack
	st = newStackWith(t, sturdy, func(ctx context.Context, run *worker.Run) error {
		return syncer.New(st.store, st.box, syncer.Options{}).Run(ctx, run)
	}, imapLogin{})
	p := newPage(t, browser, st.url)
	p.login()

	// Add the account through the form: the wrong password first, then the right one.
	p.do(chromedp.Click(chromedp.CSS(`a[href="#/accounts/new"]`)), chromedp.WaitVisible(chromedp.CSS(`#add-account-form`)))
	set := func(name, value string) chromedp.Action[chromedp.Void] {
		return chromedp.SetValue(chromedp.CSS(`#add-account-form [name=`+name+`]`), value)
	}
	submit := chromedp.Click(chromedp.CSS(`#add-account-form button[type=submit]`))
	p.do(set("name", "Grace at Dovecot"), set("imap_host", d.Host()), set("tls_mode", "none"),
		set("imap_port", fmt.Sprint(d.Port())), set("login", u.Login), set("password", "wrong"), submit)
	p.waitFor("the refusal", `!document.querySelector('#add-account-form [data-field=error]').hidden`, 15*time.Second)
	if msg := eval[string](p, `document.querySelector('#add-account-form [data-field=error]').textContent`); !strings.Contains(msg, "refused the login") {
		t.Errorf("refusal %q does not say the login was refused", msg)
	}
	if as := st.accounts(); len(as) != 0 {
		t.Fatalf("an account with a wrong password was saved: %+v", as)
	}
	p.do(set("password", u.Password), submit)
	p.waitFor("the new account", `document.querySelector('section.account h2')?.textContent === 'Grace at Dovecot'`, 15*time.Second)
	as := st.accounts()
	if len(as) != 1 {
		t.Fatalf("%d accounts saved, want 1", len(as))
	}
	acct := as[0]

	// Record every value the bar shows.
	eval[any](p, fmt.Sprintf(`{
		window.seen = [];
		const bar = document.querySelector('%s [role=progressbar]');
		new MutationObserver(() => window.seen.push(Number(bar.getAttribute('aria-valuenow'))))
			.observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
		null }`, card(acct.ID)))
	for range 10 {
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
	}
	p.waitFor("success", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 60*time.Second)
	if n := st.taskCount(acct.ID); n != 1 {
		t.Fatalf("ten clicks made %d tasks, want 1", n)
	}
	seen := eval[[]float64](p, `window.seen`)
	if !slices.ContainsFunc(seen, func(v float64) bool { return v > 0 && v < 100 }) || seen[len(seen)-1] != 100 {
		t.Fatalf("the bar showed %v: want values between 0 and 100, ending at 100", seen)
	}
	if !slices.IsSorted(seen) {
		t.Errorf("the bar went backwards: %v", seen)
	}
	t.Logf("the bar showed %d values on its way to 100 %%", len(seen))
	for _, key := range []string{"new", "total"} {
		if got := p.stat(acct.ID, key); got != total {
			t.Errorf("the page's %q is %d, the server holds %d", key, got, total)
		}
	}
	before := p.requests.Load()
	time.Sleep(5 * time.Second)
	if after := p.requests.Load(); after != before {
		t.Fatalf("the page made %d requests in the 5 s after the end, want 0", after-before)
	}
	p.screenshot("dovecot-accounts-after-sync")

	// Full resync: a new task that rescans every folder and finds the copy complete.
	first := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID)))
	p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=full]`)))
	p.waitFor("the full resync", fmt.Sprintf(`(c => c.dataset.state === 'succeeded' && c.dataset.taskId !== %q)(document.querySelector('%s'))`, first, card(acct.ID)), 60*time.Second)
	full, err := st.tasks.Get(context.Background(), eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID))))
	if err != nil {
		t.Fatal(err)
	}
	if !full.ForceFull || full.Progress.New != 0 {
		t.Errorf("full resync: force_full %v, %d new; want a forced rescan that finds nothing new", full.ForceFull, full.Progress.New)
	}
	if got := p.stat(acct.ID, "new"); got != 0 {
		t.Errorf("the page shows %d new messages after a full resync of a complete copy", got)
	}

	// Browse: every folder in the filter with the server's count, a page of messages, a search,
	// one message.
	p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` a[href$="/messages"]`)))
	p.waitFor("the message list", `document.querySelectorAll('#message-list li').length === 50`, 15*time.Second)
	options := eval[[]string](p, `[...document.querySelectorAll('select[name=folder] option')].map(o => o.textContent)`)
	if len(options) != len(counts)+1 || !strings.Contains(options[0], fmt.Sprint(total)) &&
		!strings.Contains(strings.ReplaceAll(options[0], ",", ""), fmt.Sprint(total)) {
		t.Errorf("folder filter %q: want all folders (%d) and each of the %d folders", options, total, len(counts))
	}
	subject := eval[string](p, `document.querySelector('#message-list li .subject').firstChild.textContent`)
	word := longestWord(subject)
	p.do(chromedp.SetValue(chromedp.CSS(`input[name=q]`), word), chromedp.Click(chromedp.CSS(`form[role=search] button[type=submit]`)))
	p.waitFor("search results", fmt.Sprintf(`document.querySelector('#message-list')?.dataset.query === %q`, word), 15*time.Second)
	if n := eval[int](p, `document.querySelectorAll('#message-list li').length`); n == 0 {
		t.Fatalf("no message matches %q, a word of a subject on the list", word)
	}
	hit := eval[string](p, `document.querySelector('#message-list li').textContent`)
	if !strings.Contains(strings.ToLower(hit), strings.ToLower(word)) {
		t.Logf("first hit for %q matched in its text, not in what the list shows: %q", word, hit)
	}
	p.screenshot("dovecot-messages-search")
	p.do(chromedp.Click(chromedp.CSS(`#message-list li a`)))
	p.waitFor("the message", `document.querySelector('pre.body') !== null`, 15*time.Second)
	if h1 := eval[string](p, `document.querySelector('h1').textContent`); h1 == "" {
		t.Error("the message page has no subject heading")
	}
	p.screenshot("dovecot-message")
}

func longestWord(s string) string {
	best := ""
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return ('a' > r || r > 'z') && ('A' > r || r > 'Z') }) {
		if len(w) > len(best) {
			best = w
		}
	}
	return best
}
