package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
	"mailsync/internal/webhook"
)

// TestWebhooksPage drives the Webhooks page in the real Chromium: add an endpoint (the secret is
// shown once), send a test event and see the delivery with its status and latency, see the
// endpoint disabled with the reason after its receiver answered 410, enable it again and see the
// changes delivered.
func TestWebhooksPage(t *testing.T) {
	browser := newBrowser(t)
	var status atomic.Int64
	status.Store(http.StatusOK)
	var got atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(int(status.Load()))
	}))
	defer rcv.Close()

	mb := &mailbox{folders: []int{10}, step: time.Millisecond, batch: 10}
	st := newStackWith(t, lifecycle(), mb.sync, fakeLogin{}, func(c *instance.Config) {
		c.WebhookClient = webhook.ClientConfig{AllowPrivate: true, Timeout: 2 * time.Second}
		c.Webhooks = webhook.Config{Poll: 50 * time.Millisecond, RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	})
	acct := st.addAccount("Work")
	p := newPage(t, browser, st.url)
	p.login()
	p.do(chromedp.Click(chromedp.CSS(`nav a[data-nav=webhooks]`)))
	p.waitFor("the page", `document.querySelector('h1')?.textContent === 'Webhooks'`, 10*time.Second)
	p.waitFor("the empty list", `document.querySelector('.webhooks')?.innerText.includes('No endpoint yet')`, 5*time.Second)

	p.do(chromedp.SendKeys(chromedp.CSS(`form.add-webhook input[name=url]`), rcv.URL+"/hook"),
		chromedp.Click(chromedp.CSS(`form.add-webhook button[type=submit]`)))
	p.waitFor("the secret", `document.querySelector('code.secret')?.textContent.startsWith('whsec_')`, 10*time.Second)
	p.waitFor("the endpoint", `document.querySelector('.webhook [data-state=enabled]')`, 10*time.Second)
	hooks, err := st.store.Webhooks(context.Background(), st.user.ID)
	if err != nil || len(hooks) != 1 || !hooks[0].AllAccounts {
		t.Fatalf("stored endpoints: %+v %v", hooks, err)
	}
	card := fmt.Sprintf(`.webhook[data-webhook="%d"]`, hooks[0].ID)
	p.screenshot("webhooks-added")

	p.do(chromedp.Click(chromedp.CSS(card + ` button[data-action=test]`)))
	p.waitFor("the test result", fmt.Sprintf(`document.querySelector('%s [data-test-status="200"]')`, card), 10*time.Second)
	p.waitFor("the delivery row", fmt.Sprintf(`document.querySelector('%s table.deliveries [data-status="200"]')`, card), 10*time.Second)
	if row := eval[string](p, fmt.Sprintf(`document.querySelector('%s table.deliveries tbody tr').innerText`, card)); !strings.Contains(row, "ms") || !strings.Contains(row, "test event") {
		t.Fatalf("the delivery row says %q, want its latency and that it was a test", row)
	}

	// The receiver now wants no more: the next real delivery disables the endpoint.
	status.Store(http.StatusGone)
	st.stopWorker() // the changes below come from a task of the test's, not from the worker
	w := storetest.NewChangeWriter(t, st.store, st.tasks, acct.ID, "INBOX")
	if _, err := w.Write(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	st.startWorker()
	p.waitFor("the disabled endpoint", fmt.Sprintf(`document.querySelector('%s [data-state=disabled]')`, card), 15*time.Second)
	reason := eval[string](p, fmt.Sprintf(`document.querySelector('%s .reason').textContent`, card))
	if !strings.Contains(reason, "410") {
		t.Fatalf("the reason shown is %q, want the receiver's 410", reason)
	}
	p.screenshot("webhooks-disabled")

	status.Store(http.StatusNoContent)
	p.do(chromedp.Click(chromedp.CSS(card + ` button[data-action=toggle]`)))
	p.waitFor("the enabled endpoint", fmt.Sprintf(`document.querySelector('%s [data-state=enabled]')`, card), 10*time.Second)
	p.waitFor("the changes delivered", fmt.Sprintf(`document.querySelector('%s table.deliveries [data-status="204"]')`, card), 15*time.Second)
	p.waitFor("caught up", fmt.Sprintf(`document.querySelector('%s .facts').innerText.includes('Caught up')`, card), 10*time.Second)
	p.screenshot("webhooks-resumed")
}
