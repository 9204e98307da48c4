package web_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// newBrowser starts one headless Chromium for a test and its subtests.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1200, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // start the browser now, once
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return bctx
}

// page is one browser tab on a mailsync server.
type page struct {
	t        *testing.T
	ctx      context.Context
	url      string       // of the server the page is on
	requests atomic.Int64 // every request the tab sent, counted from DevTools network events
}

func newPage(t *testing.T, browser context.Context, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext()) // its own cookies
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelTimeout)
	p := &page{t: t, ctx: ctx, url: url}
	if err := chromedp.Listen(ctx, func(ev any) {
		if _, ok := ev.(*network.EventRequestWillBeSent); ok {
			p.requests.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy.
func (p *page) waitFor(what, expr string, timeout time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[any](expr,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		p.t.Fatalf("browser: waiting %s for %s (%s): %v\npage text: %s", timeout, what, expr, err,
			eval[string](p, `document.querySelector('main').innerText`))
	}
}

// login opens the UI and signs in.
func (p *page) login() {
	p.t.Helper()
	p.do(chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login-form input[name=email]`)),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=email]`), userEmail),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=password]`), userPassword),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`h1`)))
	p.waitFor("the accounts page", `document.querySelector('h1')?.textContent === 'Accounts'`, 10*time.Second)
}

func card(accountID int64) string {
	return fmt.Sprintf(`section.account[data-account-id="%d"]`, accountID)
}

// cardState is the data-state of an account's card: none, queued, running, stalled, succeeded...
func (p *page) cardState(accountID int64) string {
	return eval[string](p, fmt.Sprintf(`document.querySelector('%s')?.dataset.state ?? ''`, card(accountID)))
}

func (p *page) stat(accountID int64, key string) int {
	p.t.Helper()
	s := eval[string](p, fmt.Sprintf(`document.querySelector('%s [data-stat=%s]').textContent`, card(accountID), key))
	n, err := strconv.Atoi(strings.NewReplacer(",", "", ".", "", "\u202f", "", "\u00a0", "").Replace(s))
	if err != nil {
		p.t.Fatalf("stat %s shows %q, not a number", key, s)
	}
	return n
}

func (p *page) percent(accountID int64) float64 {
	return eval[float64](p, fmt.Sprintf(`Number(document.querySelector('%s [role=progressbar]').getAttribute('aria-valuenow'))`, card(accountID)))
}

// screenshot writes a PNG of the page among the test's artifacts.
func (p *page) screenshot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

func TestBrowser(t *testing.T) {
	browser := newBrowser(t)

	t.Run("SyncNowStormIsOneTaskAndThePageGoesQuiet", func(t *testing.T) {
		mb := &mailbox{folders: []int{1200, 500, 300}, step: 30 * time.Millisecond, batch: 50}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Work")
		p := newPage(t, browser, st.url)
		p.login()
		p.waitFor("the card", fmt.Sprintf(`document.querySelector('%s')`, card(acct.ID)), 5*time.Second)
		if got := p.cardState(acct.ID); got != "none" {
			t.Fatalf("a never-synced account shows state %q", got)
		}

		release := mb.hold()
		btn := chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)
		for range 10 {
			p.do(chromedp.Click(btn))
		}
		// And ten more from script, in one burst, in case the real clicks were too slow to race.
		eval[any](p, fmt.Sprintf(`{ const b = document.querySelector('%s button[data-action=sync]'); for (let i = 0; i < 10; i++) b.click(); null }`, card(acct.ID)))
		p.waitFor("the sync to run", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'running'`, card(acct.ID)), 10*time.Second)
		p.waitFor("progress", fmt.Sprintf(`Number(document.querySelector('%s [role=progressbar]').getAttribute('aria-valuenow')) > 0`, card(acct.ID)), 10*time.Second)
		if n := st.taskCount(acct.ID); n != 1 {
			t.Fatalf("20 clicks made %d tasks, want 1", n)
		}
		if !eval[bool](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Fatal("Sync now is enabled while the account's task is live")
		}
		p.waitFor("the halfway hold", fmt.Sprintf(`Number(document.querySelector('%s [role=progressbar]').getAttribute('aria-valuenow')) >= 50`, card(acct.ID)), 10*time.Second)
		mid := p.percent(acct.ID)
		time.Sleep(400 * time.Millisecond) // the bar's width transition
		p.screenshot("accounts-mid-sync")
		release()

		p.waitFor("success", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		if got := p.percent(acct.ID); got != 100 || mid >= 100 {
			t.Fatalf("progress went from %v to %v, want it to move and reach 100", mid, got)
		}
		if got, want := p.stat(acct.ID, "new"), mb.total(); got != want {
			t.Errorf("page shows %d new messages, the mailbox has %d", got, want)
		}
		if got, want := p.stat(acct.ID, "total"), mb.total(); got != want {
			t.Errorf("page shows %d messages, the mailbox has %d", got, want)
		}
		if n := st.taskCount(acct.ID); n != 1 {
			t.Fatalf("%d tasks after the sync, want 1", n)
		}
		if eval[bool](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Fatal("Sync now stays disabled after the sync ended")
		}

		before := p.requests.Load()
		if before < 5 { // the page, its modules, the API calls, the stream: the counter must see them
			t.Fatalf("only %d requests counted before the end: the network listener is not working", before)
		}
		time.Sleep(5 * time.Second)
		if after := p.requests.Load(); after != before {
			t.Fatalf("the page made %d requests in the 5 s after the terminal event, want 0", after-before)
		}
		p.screenshot("accounts-after-sync")
	})

	t.Run("ReloadMidSyncFollowsTheSameTask", func(t *testing.T) {
		mb := &mailbox{folders: []int{400, 400}, step: 20 * time.Millisecond, batch: 40}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Home")
		p := newPage(t, browser, st.url)
		p.login()
		release := mb.hold()
		defer release()
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("halfway", fmt.Sprintf(`Number(document.querySelector('%s [role=progressbar]').getAttribute('aria-valuenow')) >= 50`, card(acct.ID)), 10*time.Second)
		taskID := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID)))

		p.do(chromedp.Reload())
		p.waitFor("the card after reload", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'running'`, card(acct.ID)), 10*time.Second)
		if got := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID))); got != taskID {
			t.Fatalf("after reload the page shows task %s, want the running %s", got, taskID)
		}
		if pct := p.percent(acct.ID); pct < 50 {
			t.Fatalf("after reload the progress is %v%%, want the task's ≥ 50%%", pct)
		}
		if eval[bool](p, fmt.Sprintf(`!document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Fatal("after reload Sync now is enabled during a live sync")
		}
		release()
		p.waitFor("success", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		if n := st.taskCount(acct.ID); n != 1 {
			t.Fatalf("%d tasks, want 1", n)
		}
	})

	t.Run("ServerThatStopsAnsweringShowsWaiting", func(t *testing.T) {
		// The body stands for a sync whose IMAP server went quiet: its worker is alive and
		// heartbeats, its connection says it has heard nothing since a moment ago.
		gaveUp := make(chan struct{})
		body := func(ctx context.Context, run *worker.Run) error {
			run.Report(task.Progress{Phase: "fetching INBOX", FoldersTotal: 2, MessagesTotal: 100, MessagesDone: 10})
			run.Waiting(time.Now())
			select {
			case <-gaveUp:
			case <-ctx.Done():
			}
			run.Waiting(time.Time{})
			return errors.New("imap: fetch bodies 11:* of \"INBOX\": timeout: no progress within 60s")
		}
		st := newStack(t, body, fakeLogin{})
		acct := st.addAccount("Frozen")
		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("waiting for the server", fmt.Sprintf(`document.querySelector('%s').dataset.waiting === 'true'`, card(acct.ID)), 10*time.Second)
		if got := p.cardState(acct.ID); got != "running" {
			t.Fatalf("a sync waiting on its server shows state %q, want running", got)
		}
		status := eval[string](p, fmt.Sprintf(`document.querySelector('%s .status').textContent`, card(acct.ID)))
		if !strings.Contains(status, "Waiting for the server") || !strings.Contains(status, "has sent nothing since") {
			t.Fatalf("the card says %q, want that it waits for the server and since when", status)
		}
		if !eval[bool](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Fatal("Sync now is enabled while the task is live, only waiting")
		}
		p.screenshot("accounts-waiting-for-server")
		close(gaveUp)
		p.waitFor("the failure", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'failed'`, card(acct.ID)), 10*time.Second)
		if eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.waiting`, card(acct.ID))) != "false" {
			t.Fatal("a failed sync still shows as waiting for the server")
		}
	})

	t.Run("DeadWorkersTaskIsRetriedWithoutAClick", func(t *testing.T) {
		mb := &mailbox{folders: []int{200}, step: 10 * time.Millisecond, batch: 50}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Old server")
		st.stopWorker() // this instance runs no worker and no reaper: the test plays one that dies

		dead, _, err := st.tasks.Start(context.Background(), acct.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		claimed, ok, err := st.tasks.Claim(context.Background(), "worker-that-dies")
		if err != nil || !ok || claimed.ID != dead.ID {
			t.Fatalf("claim: %v %v %v", claimed.ID, ok, err)
		}
		// It never sends a heartbeat again, as if SIGKILLed.

		p := newPage(t, browser, st.url)
		p.login()
		p.waitFor("the running task", fmt.Sprintf(`['running', 'queued'].includes(document.querySelector('%s')?.dataset.state)`, card(acct.ID)), 5*time.Second)
		// The page's stream does not wait on the dead task: it reaps it, and the page shows the
		// task queued for its next attempt.
		timeout := lifecycle().HeartbeatTimeout
		p.waitFor("the retry queued", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'queued'`, card(acct.ID)), timeout+5*time.Second)
		if got := eval[string](p, fmt.Sprintf(`document.querySelector('%s').innerText`, card(acct.ID))); !strings.Contains(got, "Retrying") {
			t.Errorf("the card of the retry says:\n%s", got)
		}
		p.screenshot("accounts-retry-queued")

		st.startWorker()
		p.waitFor("success of the retry", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		if id := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID))); id != dead.ID {
			t.Fatalf("the page shows task %s, want the retried %s", id, dead.ID)
		}
		if got, want := p.stat(acct.ID, "new"), mb.total(); got != want {
			t.Errorf("page shows %d new messages, the mailbox has %d", got, want)
		}
		if n := st.taskCount(acct.ID); n != 1 {
			t.Fatalf("%d tasks, want the one task, retried", n)
		}
	})

	t.Run("ReplacedTaskIsFollowedToItsReplacement", func(t *testing.T) {
		mb := &mailbox{folders: []int{200}, step: 10 * time.Millisecond, batch: 50}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Shared")
		st.stopWorker()
		old, _, err := st.tasks.Start(context.Background(), acct.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		running, _, err := st.tasks.Claim(context.Background(), "worker-elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		beating := make(chan struct{})
		go func() { // alive until it is replaced
			for {
				select {
				case <-beating:
					return
				case <-time.After(100 * time.Millisecond):
					st.tasks.Heartbeat(context.Background(), running.Lease(), task.Progress{Phase: "fetch"})
				}
			}
		}()
		p := newPage(t, browser, st.url)
		p.login()
		p.waitFor("the running task", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'running'`, card(acct.ID)), 10*time.Second)

		// Another instance, whose Start sees the task dead (its clock a minute ahead, as the
		// database's will be once the worker has been silent that long), replaces it.
		close(beating)
		later, err := task.NewManager(st.store, lifecycle())
		if err != nil {
			t.Fatal(err)
		}
		later.Now = func() time.Time { return time.Now().Add(time.Minute) }
		fresh, created, err := later.Start(context.Background(), acct.ID, false)
		if err != nil || !created {
			t.Fatalf("Start over the dead task: created=%v err=%v", created, err)
		}
		st.startWorker()
		p.waitFor("success of the replacement", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		if id := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID))); id != fresh.ID || id == old.ID {
			t.Fatalf("the page shows task %s, want the replacement %s", id, fresh.ID)
		}
		if st.taskCount(acct.ID) != 2 {
			t.Fatalf("%d tasks, want the replaced one and its replacement", st.taskCount(acct.ID))
		}
	})

	t.Run("StalledTaskBehindABrokenStreamAndSyncNowStartsAFreshTask", func(t *testing.T) {
		mb := &mailbox{folders: []int{200}, step: 10 * time.Millisecond, batch: 50}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Old server")
		st.stopWorker()
		st.breakStreams.Store(true) // the page only polls: nothing settles the dead task for it

		dead, _, err := st.tasks.Start(context.Background(), acct.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.tasks.Claim(context.Background(), "worker-that-dies"); err != nil {
			t.Fatal(err)
		}
		p := newPage(t, browser, st.url)
		p.login()
		timeout := lifecycle().HeartbeatTimeout
		p.waitFor("stalled", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'stalled'`, card(acct.ID)), timeout+15*time.Second)
		if eval[bool](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Fatal("Sync now is disabled on a stalled task")
		}
		p.screenshot("accounts-stalled")

		st.startWorker()
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("success of the new task", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		newID := eval[string](p, fmt.Sprintf(`document.querySelector('%s').dataset.taskId`, card(acct.ID)))
		if newID == dead.ID {
			t.Fatal("the page shows the dead task as succeeded")
		}
		old, err := st.tasks.Get(context.Background(), dead.ID)
		if err != nil {
			t.Fatal(err)
		}
		if old.State != "failed" {
			t.Fatalf("the dead task is %s, want failed (replaced by Start)", old.State)
		}
		if n := st.taskCount(acct.ID); n != 2 {
			t.Fatalf("%d tasks, want the dead one and its replacement", n)
		}
	})

	t.Run("BrokenStreamFallsBackToPollingUntilTheEnd", func(t *testing.T) {
		mb := &mailbox{folders: []int{300, 300}, step: 20 * time.Millisecond, batch: 30}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Behind a proxy")
		st.breakStreams.Store(true)
		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("success by polling", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 30*time.Second)
		if st.taskPolls.Load() == 0 || st.streamRequests.Load() == 0 {
			t.Fatalf("%d stream attempts, %d polls: want the stream tried and the task polled", st.streamRequests.Load(), st.taskPolls.Load())
		}
		if got, want := p.stat(acct.ID, "new"), mb.total(); got != want {
			t.Errorf("page shows %d new messages, the mailbox has %d", got, want)
		}
		before := p.requests.Load()
		time.Sleep(3 * time.Second)
		if after := p.requests.Load(); after != before {
			t.Fatalf("the page made %d requests after polling saw the end, want 0", after-before)
		}
	})

	t.Run("FailedSyncShowsItsErrorAndRetries", func(t *testing.T) {
		mb := &mailbox{folders: []int{200}, step: 5 * time.Millisecond, batch: 20}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Flaky")
		p := newPage(t, browser, st.url)
		p.login()
		mb.failNext(errors.New("transient: the IMAP server closed the connection"))
		btn := chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)
		p.do(chromedp.Click(btn))
		p.waitFor("the failure", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'failed'`, card(acct.ID)), 15*time.Second)
		msg := eval[string](p, fmt.Sprintf(`document.querySelector('%s [data-field=error]').textContent`, card(acct.ID)))
		if !strings.Contains(msg, "closed the connection") {
			t.Errorf("the card shows %q, want the task's error", msg)
		}
		if label := eval[string](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').textContent`, card(acct.ID))); label != "Retry" {
			t.Errorf("the button says %q after a failure, want Retry", label)
		}
		p.screenshot("accounts-failed")
		p.do(chromedp.Click(btn))
		p.waitFor("the retry's success", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'succeeded'`, card(acct.ID)), 15*time.Second)
		if eval[bool](p, fmt.Sprintf(`!document.querySelector('%s [data-field=error]').hidden`, card(acct.ID))) {
			t.Error("the old error is still shown after a successful retry")
		}
	})

	t.Run("CancelStopsTheSyncAndThePageGoesQuiet", func(t *testing.T) {
		mb := &mailbox{folders: []int{400}, step: 10 * time.Millisecond, batch: 20}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Too big")
		p := newPage(t, browser, st.url)
		p.login()
		release := mb.hold()
		defer release()
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("the hold", fmt.Sprintf(`Number(document.querySelector('%s [role=progressbar]').getAttribute('aria-valuenow')) >= 50`, card(acct.ID)), 10*time.Second)
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=cancel]`)))
		p.waitFor("cancelled", fmt.Sprintf(`document.querySelector('%s').dataset.state === 'cancelled'`, card(acct.ID)), 10*time.Second)
		if eval[bool](p, fmt.Sprintf(`document.querySelector('%s button[data-action=sync]').disabled`, card(acct.ID))) {
			t.Error("Sync now stays disabled after a cancel")
		}
		before := p.requests.Load()
		time.Sleep(2 * time.Second)
		if after := p.requests.Load(); after != before {
			t.Fatalf("the page made %d requests after the cancel ended the task, want 0", after-before)
		}
	})

	t.Run("HealthPageForAnAdmin", func(t *testing.T) {
		mb := &mailbox{folders: []int{10}, step: time.Millisecond, batch: 10}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Checked")
		st.stopWorker()
		st.breakStreams.Store(true) // the accounts page shown at sign-in must not settle the dead task
		dead, _, err := st.tasks.Start(context.Background(), acct.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.tasks.Claim(context.Background(), "worker-that-dies"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lifecycle().HeartbeatTimeout + 200*time.Millisecond)

		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Click(chromedp.CSS(`nav a[data-nav=health]`)))
		p.waitFor("the health page", `document.querySelector('button[data-action=cleanup]') !== null`, 10*time.Second)
		text := eval[string](p, `document.querySelector('main').innerText`)
		for _, want := range []string{"sync:dead", "database:responseTime", "process:goroutines", "Checked", "running, not live"} {
			if !strings.Contains(text, want) {
				t.Errorf("the health page lacks %q:\n%s", want, text)
			}
		}
		p.do(chromedp.Click(chromedp.CSS(`button[data-action=cleanup]`)))
		p.waitFor("the cleanup result", `document.querySelector('main .notice') !== null`, 10*time.Second)
		if got := eval[string](p, `document.querySelector('main .notice').textContent`); !strings.Contains(got, "Cleaned up 1 dead sync") {
			t.Errorf("cleanup says %q", got)
		}
		p.screenshot("health")
		after, err := st.tasks.Get(context.Background(), dead.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.State == "running" {
			t.Error("the dead task is still running after the cleanup")
		}
	})

	t.Run("ExpiredSessionGoesBackToSignIn", func(t *testing.T) {
		mb := &mailbox{folders: []int{10}, step: time.Millisecond, batch: 10}
		st := newStack(t, mb.sync, fakeLogin{})
		acct := st.addAccount("Anywhere")
		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error { // as if the session had expired
			_, err := cdp.Call(ctx, t, network.ClearBrowserCookies, cdp.Empty{})
			return err
		}))
		p.do(chromedp.Click(chromedp.CSS(card(acct.ID) + ` button[data-action=sync]`)))
		p.waitFor("the sign-in form", `document.querySelector('#login-form') !== null`, 10*time.Second)
		if n := st.taskCount(acct.ID); n != 0 {
			t.Fatalf("a signed-out click started %d tasks", n)
		}
		p.login()
	})

	t.Run("WrongIMAPPasswordIsRefusedInWords", func(t *testing.T) {
		mb := &mailbox{folders: []int{10}, step: time.Millisecond, batch: 10}
		st := newStack(t, mb.sync, fakeLogin{})
		p := newPage(t, browser, st.url)
		p.login()
		p.do(chromedp.Click(chromedp.CSS(`a[href="#/accounts/new"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#add-account-form`)))
		fill := func(name, value string) chromedp.Action[chromedp.Void] {
			return chromedp.SendKeys(chromedp.CSS(`#add-account-form [name=`+name+`]`), value)
		}
		p.do(fill("name", "Mistyped"), fill("imap_host", "127.0.0.1"),
			chromedp.SetValue(chromedp.CSS(`#add-account-form [name=tls_mode]`), "none"),
			chromedp.SetValue(chromedp.CSS(`#add-account-form [name=imap_port]`), "1143"),
			fill("login", "ada"), fill("password", "not-the-password"),
			chromedp.Click(chromedp.CSS(`#add-account-form button[type=submit]`)))
		p.waitFor("the error", `!document.querySelector('#add-account-form [data-field=error]').hidden`, 10*time.Second)
		msg := eval[string](p, `document.querySelector('#add-account-form [data-field=error]').textContent`)
		for _, want := range []string{"Not saved", "refused the login", "Authentication failed"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "not-the-password") {
			t.Errorf("error %q shows the password", msg)
		}
		if as := st.accounts(); len(as) != 0 {
			t.Fatalf("a refused account was saved: %+v", as)
		}
		p.screenshot("add-account-refused")

		// The right password goes through and lands on the accounts page.
		p.do(chromedp.SetValue(chromedp.CSS(`#add-account-form [name=password]`), imapPassword),
			chromedp.Click(chromedp.CSS(`#add-account-form button[type=submit]`)))
		p.waitFor("the new account", `document.querySelector('section.account h2')?.textContent === 'Mistyped'`, 10*time.Second)
		if as := st.accounts(); len(as) != 1 {
			t.Fatalf("%d accounts saved, want 1", len(as))
		}
	})
}
