package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/webhook"
)

// fixture is a store with accounts whose changes a deliverer sends to one endpoint.
type fixture struct {
	t       *testing.T
	s       *store.Store
	hook    store.Webhook
	secret  string
	writers map[int64]*storetest.ChangeWriter
	want    map[int64][]int64
	d       *webhook.Deliverer
	stop    func()
	mu      sync.Mutex
}

// fastConfig is a deliverer in milliseconds.
func fastConfig() webhook.Config {
	return webhook.Config{BatchSize: 25, Concurrency: 4, Poll: 20 * time.Millisecond, Lease: 5 * time.Second,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
}

func fastClient(allowPrivate bool) webhook.ClientConfig {
	return webhook.ClientConfig{ConnectTimeout: 300 * time.Millisecond, Timeout: 500 * time.Millisecond, AllowPrivate: allowPrivate}
}

// newFixture makes accounts for one user, an endpoint of all of them at url, and a deliverer
// with cfg and cc running until the test ends.
func newFixture(t *testing.T, dialect, url string, accounts int, cfg webhook.Config, cc webhook.ClientConfig) *fixture {
	t.Helper()
	ctx := context.Background()
	s := storetest.Open(t, dialect)
	m, err := task.NewManager(s, instancetest.Lifecycle())
	if err != nil {
		t.Fatal(err)
	}
	box, err := secret.New(instancetest.Key())
	if err != nil {
		t.Fatal(err)
	}
	first := storetest.SeedAccount(t, s)
	f := &fixture{t: t, s: s, writers: map[int64]*storetest.ChangeWriter{}, want: map[int64][]int64{}}
	for i := range accounts {
		a := first
		if i > 0 {
			if a, err = s.CreateAccount(ctx, store.Account{UserID: first.UserID, Name: fmt.Sprint("acct", i), IMAPHost: "h",
				IMAPPort: 143, TLSMode: "none", Login: "l", SecretEnc: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		f.writers[a.ID] = storetest.NewChangeWriter(t, s, m, a.ID, "INBOX")
	}
	f.secret = webhook.NewSecret()
	if f.hook, err = s.CreateWebhook(ctx, store.Webhook{UserID: first.UserID, URL: url, AllAccounts: true},
		func(id int64) []byte { return box.Seal([]byte(f.secret), secret.WebhookContext(id)) }); err != nil {
		t.Fatal(err)
	}
	f.d = webhook.New(s, box, webhook.NewClient(cc), cfg)
	s.OnChanges(func(int64, []changes.Change) { f.d.Wake() })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.d.Run(runCtx)
	}()
	f.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(f.stop)
	return f
}

// write commits n changes on every account, in batches of at most 10, and remembers them.
func (f *fixture) write(n int) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for acct, w := range f.writers {
		for done := 0; done < n; {
			k := min(10, n-done)
			if _, err := w.Write(context.Background(), k); err != nil {
				f.t.Fatal(err)
			}
			done += k
		}
		head, err := f.s.ChangeHead(context.Background(), acct)
		if err != nil {
			f.t.Fatal(err)
		}
		f.want[acct] = f.want[acct][:0]
		for seq := int64(1); seq <= head.Last; seq++ {
			f.want[acct] = append(f.want[acct], seq)
		}
	}
}

// waitAll waits until the receiver holds every change written, in order, and fails with what
// is wrong if it does not within the time.
func (f *fixture) waitAll(r *receiver, within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		problems := check(r.received(), f.secret, f.want)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			hist, _ := f.s.WebhookAttempts(context.Background(), f.hook.ID, 5)
			f.t.Fatalf("after %s the receiver does not hold what was written:\n%s\nlast attempts: %+v", within,
				strings.Join(problems, "\n"), hist)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReceiverEndsWithEveryChange delivers to a receiver that fails, times out, is slow or is
// down for a while, on both engines: in every case it ends with every change, in order per
// account, duplicates only of the same change under the same id, every request signed.
func TestReceiverEndsWithEveryChange(t *testing.T) {
	cases := []struct {
		name string
		mode mode
		// meanwhile runs after the first writes, before the rest.
		meanwhile func(t *testing.T, r *receiver, f *fixture)
	}{
		{name: "healthy"},
		{name: "fails the first attempts", mode: mode{FailNext: 6}},
		{name: "answers 503 then 429", mode: mode{FailNext: 3, FailStatus: 503}, meanwhile: func(t *testing.T, r *receiver, f *fixture) {
			r.set(mode{FailNext: 3, FailStatus: 429})
		}},
		{name: "times out", mode: mode{HoldNext: 3, Hold: 1500 * time.Millisecond}},
		{name: "is slow", mode: mode{Delay: 30 * time.Millisecond}},
		{name: "is down for a while", meanwhile: func(t *testing.T, r *receiver, f *fixture) {
			r.kill()
			f.write(30)
			time.Sleep(700 * time.Millisecond) // several retries find nobody
			r.restart(mode{})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.ForEach(t, func(t *testing.T, d string) {
				r := startReceiver(t, tc.mode)
				f := newFixture(t, d, r.url(), 2, fastConfig(), fastClient(true))
				f.write(40)
				if tc.meanwhile != nil {
					tc.meanwhile(t, r, f)
				}
				f.write(40)
				f.waitAll(r, 30*time.Second)
				hook, err := f.s.Webhook(context.Background(), f.hook.ID)
				if err != nil || !hook.Enabled {
					t.Fatalf("the endpoint: %+v %v", hook, err)
				}
				if tc.mode.FailNext > 0 || tc.mode.HoldNext > 0 {
					assertFailuresRecorded(t, f)
				}
			})
		})
	}
}

func assertFailuresRecorded(t *testing.T, f *fixture) {
	t.Helper()
	hist, err := f.s.WebhookAttempts(context.Background(), f.hook.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, a := range hist {
		if a.Error != "" {
			failed++
			if a.Count == 0 || a.FirstSeq == 0 {
				t.Errorf("a failed attempt does not say what it carried: %+v", a)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no failed attempt in the history: %+v", hist)
	}
}

// TestGoneDisablesAndEnablingResumes: a 410 disables the endpoint at once, with the reason;
// changes keep accumulating; enabling it again resumes from the cursor, skipping nothing.
func TestGoneDisablesAndEnablingResumes(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		r := startReceiver(t, mode{Status: 410})
		f := newFixture(t, d, r.url(), 2, fastConfig(), fastClient(true))
		f.write(20)
		var hook store.Webhook
		waitFor(t, 10*time.Second, "the endpoint disabled", func() bool {
			var err error
			hook, err = f.s.Webhook(ctx, f.hook.ID)
			return err == nil && !hook.Enabled
		})
		if !strings.Contains(hook.DisabledReason, "410") {
			t.Fatalf("reason %q does not say 410", hook.DisabledReason)
		}
		f.write(20)
		time.Sleep(200 * time.Millisecond)
		if n := len(r.received()); n != 0 {
			t.Fatalf("a disabled endpoint received %d batches", n)
		}
		r.set(mode{})
		hook.Enabled, hook.DisabledReason = true, ""
		if _, err := f.s.UpdateWebhook(ctx, hook); err != nil {
			t.Fatal(err)
		}
		f.d.Wake()
		f.waitAll(r, 20*time.Second)
	})
}

// TestFailingTooLongDisables moves the deliverer's clock past the give-up time of a receiver
// that always fails: the endpoint is disabled, saying for how long it failed.
func TestFailingTooLongDisables(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		r := startReceiver(t, mode{Status: 500})
		clock := storetest.NewClock()
		cfg := fastConfig()
		cfg.Now, cfg.GiveUpAfter, cfg.RetryBase, cfg.RetryMax = clock.Now, 72*time.Hour, time.Minute, time.Hour
		f := newFixture(t, d, r.url(), 1, cfg, fastClient(true))
		f.write(5)
		var hook store.Webhook
		waitFor(t, 20*time.Second, "the endpoint disabled after 72 h of failures", func() bool {
			clock.Advance(time.Hour) // every retry is due within the hour (RetryMax)
			f.d.Wake()
			time.Sleep(30 * time.Millisecond)
			var err error
			hook, err = f.s.Webhook(ctx, f.hook.ID)
			return err == nil && !hook.Enabled
		})
		if !strings.Contains(hook.DisabledReason, "failed for") || !strings.Contains(hook.DisabledReason, "HTTP 500") {
			t.Fatalf("reason %q", hook.DisabledReason)
		}
		hist, err := f.s.WebhookAttempts(ctx, f.hook.ID, 100)
		if err != nil || len(hist) < 10 {
			t.Fatalf("%d attempts in 72 h of failures (%v): the backoff is too long", len(hist), err)
		}
	})
}

// TestRedirectIsNotFollowed: a 3xx is a failed attempt that says so, and nothing is sent to the
// redirect's target (the receiver exits if anything is).
func TestRedirectIsNotFollowed(t *testing.T) {
	r := startReceiver(t, mode{Status: 302})
	f := newFixture(t, "sqlite", r.url(), 1, fastConfig(), fastClient(true))
	f.write(3)
	var hist []store.Attempt
	waitFor(t, 10*time.Second, "a failed attempt", func() bool {
		hist, _ = f.s.WebhookAttempts(context.Background(), f.hook.ID, 10)
		return len(hist) > 0
	})
	if a := hist[0]; a.Status != 302 || !strings.Contains(a.Error, "redirects are not followed") {
		t.Fatalf("attempt %+v", a)
	}
	if r.cmd.ProcessState != nil {
		t.Fatal("the receiver exited: the redirect was followed")
	}
}

// TestPrivateAddressesRefused: without AllowPrivate a loopback URL is refused when it is
// registered, and a stored one is refused when the deliverer connects (DNS may have changed since).
func TestPrivateAddressesRefused(t *testing.T) {
	r := startReceiver(t, mode{})
	ctx := context.Background()
	strict := webhook.NewClient(fastClient(false))
	for _, u := range []string{r.url(), "http://localhost:9/x", "http://[::1]/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"} {
		if err := strict.CheckURL(ctx, u); !errors.Is(err, webhook.ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want ErrRefused", u, err)
		}
	}
	for _, u := range []string{"ftp://example.test/", "http://user:pw@example.test/", "http:///x"} {
		if err := strict.CheckURL(ctx, u); err == nil {
			t.Errorf("CheckURL(%s) accepted", u)
		}
	}
	if err := webhook.NewClient(fastClient(true)).CheckURL(ctx, r.url()); err != nil {
		t.Errorf("allowed private: %v", err)
	}

	f := newFixture(t, "sqlite", r.url(), 1, fastConfig(), fastClient(false))
	f.write(3)
	var hist []store.Attempt
	waitFor(t, 10*time.Second, "a refused attempt", func() bool {
		hist, _ = f.s.WebhookAttempts(ctx, f.hook.ID, 10)
		return len(hist) > 0
	})
	if a := hist[0]; a.Status != 0 || !strings.Contains(a.Error, "loopback") || !strings.Contains(a.Error, "--webhook-allow-private") {
		t.Fatalf("attempt %+v", a)
	}
	if n := len(r.received()); n != 0 {
		t.Fatalf("the receiver got %d batches past the policy", n)
	}
}

// TestSendTest posts a test event, signed, recorded in the history, moving no cursor.
func TestSendTest(t *testing.T) {
	r := startReceiver(t, mode{})
	f := newFixture(t, "sqlite", r.url(), 1, fastConfig(), fastClient(true))
	f.stop() // the deliverer's loop is not needed
	a, err := f.d.SendTest(context.Background(), f.hook)
	if err != nil || a.Status != 200 || a.Error != "" || !a.Test {
		t.Fatalf("test event: %+v %v", a, err)
	}
	recs := r.received()
	if len(recs) != 1 || !strings.Contains(string(recs[0].Body), `"kind":"webhook.test"`) {
		t.Fatalf("received %+v", recs)
	}
	if err := webhook.Verify(f.secret, recs[0].Timestamp, recs[0].Signature, recs[0].Body, time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if hist, err := f.s.WebhookAttempts(context.Background(), f.hook.ID, 10); err != nil || len(hist) != 1 || !hist[0].Test {
		t.Fatalf("history %+v %v", hist, err)
	}
}

func TestSignatureVerification(t *testing.T) {
	body := []byte(`{"changes":[]}`)
	now := time.Unix(1_800_000_000, 0)
	sig := webhook.Sign("whsec_k", now, body)
	ts := fmt.Sprint(now.Unix())
	cases := []struct {
		name, secret, ts, sig string
		body                  []byte
		at                    time.Time
		ok                    bool
	}{
		{"valid", "whsec_k", ts, sig, body, now, true},
		{"second of several signatures", "whsec_k", ts, "v1=00, " + sig, body, now, true},
		{"other secret", "whsec_x", ts, sig, body, now, false},
		{"body changed", "whsec_k", ts, sig, []byte(`{"changes":[1]}`), now, false},
		{"timestamp changed", "whsec_k", fmt.Sprint(now.Unix() + 1), sig, body, now.Add(time.Second), false},
		{"replayed later", "whsec_k", ts, sig, body, now.Add(10 * time.Minute), false},
		{"no timestamp", "whsec_k", "", sig, body, now, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Verify(tc.secret, tc.ts, tc.sig, tc.body, tc.at, 5*time.Minute)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestTwoDeliverersShareTheWork runs two deliverers on one database, as two instances do: the
// leases keep each pair with one of them at a time, so the order per account holds whichever
// sends a batch.
func TestTwoDeliverersShareTheWork(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		r := startReceiver(t, mode{Delay: 5 * time.Millisecond})
		f := newFixture(t, d, r.url(), 4, fastConfig(), fastClient(true))
		box, err := secret.New(instancetest.Key())
		if err != nil {
			t.Fatal(err)
		}
		other := webhook.New(f.s, box, webhook.NewClient(fastClient(true)), fastConfig())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = other.Run(ctx)
		}()
		defer func() {
			cancel()
			<-done
		}()
		for range 4 {
			f.write(30)
		}
		f.waitAll(r, 30*time.Second)
	})
}

// TestPrunedCursorDisablesAndEnablingContinuesFromTheFloor: changes the retention window removed
// before they were delivered cannot be sent; the endpoint is disabled saying so, and enabling it
// continues from the oldest change kept.
func TestPrunedCursorDisablesAndEnablingContinuesFromTheFloor(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		r := startReceiver(t, mode{Status: 503})
		f := newFixture(t, d, r.url(), 1, fastConfig(), fastClient(true))
		f.write(10)
		waitFor(t, 10*time.Second, "a failed attempt", func() bool {
			hist, _ := f.s.WebhookAttempts(ctx, f.hook.ID, 1)
			return len(hist) > 0
		})
		if _, err := f.s.PruneChanges(ctx, time.Now().Add(time.Hour), 1000); err != nil {
			t.Fatal(err)
		}
		var hook store.Webhook
		waitFor(t, 10*time.Second, "the endpoint disabled", func() bool {
			var err error
			hook, err = f.s.Webhook(ctx, f.hook.ID)
			return err == nil && !hook.Enabled
		})
		if !strings.Contains(hook.DisabledReason, "pruned") {
			t.Fatalf("reason %q", hook.DisabledReason)
		}
		r.set(mode{})
		hook.Enabled, hook.DisabledReason = true, ""
		if _, err := f.s.UpdateWebhook(ctx, hook); err != nil {
			t.Fatal(err)
		}
		f.write(10)
		var acct int64
		for a := range f.writers {
			acct = a
		}
		f.want[acct] = f.want[acct][len(f.want[acct])-10:] // only what was written after the prune
		f.waitAll(r, 20*time.Second)
	})
}

// TestKindsFilter: an endpoint is sent only the kinds it chose, and its cursor moves past the
// others without a POST.
func TestKindsFilter(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		all := startReceiver(t, mode{})
		f := newFixture(t, d, all.url(), 2, fastConfig(), fastClient(true))
		folders := startReceiver(t, mode{})
		box, err := secret.New(instancetest.Key())
		if err != nil {
			t.Fatal(err)
		}
		key := webhook.NewSecret()
		only, err := f.s.CreateWebhook(ctx, store.Webhook{UserID: f.hook.UserID, URL: folders.url(), AllAccounts: true,
			Kinds: []changes.Kind{changes.FolderCreated}}, func(id int64) []byte { return box.Seal([]byte(key), secret.WebhookContext(id)) })
		if err != nil {
			t.Fatal(err)
		}
		f.write(60)
		f.waitAll(all, 20*time.Second)
		firsts := map[int64][]int64{}
		for acct := range f.writers {
			firsts[acct] = []int64{1} // each account's folder.created, and nothing else
		}
		waitFor(t, 10*time.Second, "the folder endpoint caught up", func() bool {
			st, err := f.s.WebhookStates(ctx, f.hook.UserID)
			return err == nil && st[only.ID].Behind == 0
		})
		if problems := check(folders.received(), key, firsts); len(problems) > 0 {
			t.Fatal(strings.Join(problems, "\n"))
		}
		if n := len(folders.received()); n != 2 {
			t.Fatalf("%d POSTs to the folder endpoint, want one per account", n)
		}
	})
}
