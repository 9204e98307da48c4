package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// ChangeWriter commits message.created changes for one account through a real claimed task, the
// way a sync writes them: the webhook tests and the benchmark use it to fill the change log.
type ChangeWriter struct {
	s      *store.Store
	lease  task.Lease
	acct   int64
	folder string
	next   uint32
}

// NewChangeWriter starts and claims a task of the account with m (the account must have no live
// task) and returns a writer of its changes into folder.
func NewChangeWriter(tb testing.TB, s *store.Store, m *task.Manager, accountID int64, folder string) *ChangeWriter {
	tb.Helper()
	ctx := context.Background()
	if _, _, err := m.Start(ctx, accountID, false); err != nil {
		tb.Fatal(err)
	}
	tk, err := s.ClaimAccountTask(ctx, "change-writer", accountID, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	return &ChangeWriter{s: s, lease: tk.Lease(), acct: accountID, folder: folder, next: 1}
}

// Write commits n new messages in one batch: n message.created changes (and a folder.created
// before the first batch). It returns the UIDs written.
func (w *ChangeWriter) Write(ctx context.Context, n int) ([]uint32, error) {
	msgs := make([]store.Message, n)
	uids := make([]uint32, n)
	for i := range msgs {
		uid := w.next
		w.next++
		uids[i] = uid
		msgs[i] = store.Message{UID: uid, MessageID: fmt.Sprintf("<%d.%d@example.test>", w.acct, uid),
			Subject: fmt.Sprintf("Subject %d", uid), From: "a@example.test", Flags: []string{}, Size: 3, Raw: []byte("raw")}
	}
	f := store.Folder{AccountID: w.acct, Name: w.folder, Delimiter: "/", UIDValidity: 1, UIDNext: w.next}
	if _, err := w.s.CommitBatch(ctx, w.lease, task.Progress{}, store.Batch{Folder: f, Messages: msgs}); err != nil {
		return nil, err
	}
	return uids, nil
}

// testWebhooks covers the webhook outbox: cursors start at the head, a claim takes only what is
// due and undelivered, advances are fenced, failures back off and end in a disabled endpoint,
// re-enabling resumes where it stopped, and the attempt history stays bounded.
func testWebhooks(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	w := NewChangeWriter(t, e.store, e.tasks, acct.ID, "INBOX")
	if _, err := w.Write(ctx, 3); err != nil { // before the endpoint: never sent
		t.Fatal(err)
	}
	hook, err := e.store.CreateWebhook(ctx, store.Webhook{UserID: acct.UserID, URL: "https://example.test/h",
		Kinds: []changes.Kind{changes.MessageCreated}, AccountIDs: []int64{acct.ID}},
		func(id int64) []byte { return fmt.Appendf(nil, "sealed-%d", id) })
	if err != nil {
		t.Fatal(err)
	}
	if string(hook.SecretEnc) != fmt.Sprintf("sealed-%d", hook.ID) || !hook.Enabled || len(hook.AccountIDs) != 1 {
		t.Fatalf("created %+v", hook)
	}
	other := SeedAccount(t, e.store)
	if _, err := e.store.CreateWebhook(ctx, store.Webhook{UserID: acct.UserID, URL: "https://example.test/x",
		AccountIDs: []int64{other.ID}}, func(int64) []byte { return []byte("s") }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an endpoint on another user's account: %v, want ErrNotFound", err)
	}

	now := e.clock.Now()
	claim := func(owner string) []store.Delivery {
		t.Helper()
		ds, err := e.store.ClaimDeliveries(ctx, owner, time.Minute, 10, now)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	if ds := claim("a"); len(ds) != 0 {
		t.Fatalf("nothing after the head, yet claimed %+v", ds)
	}
	if _, err := w.Write(ctx, 2); err != nil { // changes 5 and 6 (4 was the folder.created)
		t.Fatal(err)
	}
	ds := claim("a")
	if len(ds) != 1 || ds[0].Delivered != 4 || ds[0].Head != 6 || ds[0].Webhook.URL != hook.URL {
		t.Fatalf("claim: %+v", ds)
	}
	d := ds[0]
	if again := claim("b"); len(again) != 0 {
		t.Fatalf("a leased pair was claimed again: %+v", again)
	}

	// A failure backs off; the pair is not due before retryIn.
	if off, err := e.store.FailDelivery(ctx, d, store.Attempt{WebhookID: hook.ID, AccountID: acct.ID, DeliveryID: "d1",
		Status: 500, Error: "HTTP 500", FirstSeq: 5, LastSeq: 6, Count: 2}, time.Minute, time.Hour, false, "", now); err != nil || off {
		t.Fatalf("fail: disabled=%v err=%v", off, err)
	}
	if ds := claim("b"); len(ds) != 0 {
		t.Fatalf("claimed before its retry time: %+v", ds)
	}
	now = now.Add(2 * time.Minute)
	ds = claim("b")
	if len(ds) != 1 || ds[0].Failures != 1 || ds[0].FailingSince.IsZero() {
		t.Fatalf("claim after the backoff: %+v", ds)
	}
	// The first holder's lease is gone: its advance moves nothing.
	if err := e.store.AdvanceDelivery(ctx, d, 6, nil, time.Minute, now); !errors.Is(err, task.ErrLeaseLost) {
		t.Fatalf("stale advance: %v, want ErrLeaseLost", err)
	}
	d = ds[0]
	if err := e.store.AdvanceDelivery(ctx, d, 6, &store.Attempt{WebhookID: hook.ID, AccountID: acct.ID, DeliveryID: "d2",
		Status: 204, FirstSeq: 5, LastSeq: 6, Count: 2}, time.Minute, now); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ReleaseDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	if ds := claim("c"); len(ds) != 0 {
		t.Fatalf("everything delivered, yet claimed %+v", ds)
	}

	// Failing past giveUpAfter disables the endpoint; nothing is claimed while it is disabled.
	if _, err := w.Write(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for i, step := range []time.Duration{0, 2 * time.Hour} {
		now = now.Add(step)
		ds := claim("c")
		if len(ds) != 1 {
			t.Fatalf("round %d: claimed %+v", i, ds)
		}
		off, err := e.store.FailDelivery(ctx, ds[0], store.Attempt{WebhookID: hook.ID, AccountID: acct.ID, DeliveryID: "x",
			Error: "connection refused"}, 0, time.Hour, false, "", now)
		if err != nil || off != (i == 1) {
			t.Fatalf("round %d: disabled=%v err=%v", i, off, err)
		}
	}
	if ds := claim("c"); len(ds) != 0 {
		t.Fatalf("a disabled endpoint's pair was claimed: %+v", ds)
	}
	got, err := e.store.Webhook(ctx, hook.ID)
	if err != nil || got.Enabled || got.DisabledReason == "" {
		t.Fatalf("after giving up: %+v %v", got, err)
	}
	states, err := e.store.WebhookStates(ctx, acct.UserID)
	if err != nil || states[hook.ID].Behind != 1 || states[hook.ID].OldestUndelivered.IsZero() || states[hook.ID].FailingSince.IsZero() {
		t.Fatalf("state of the disabled endpoint: %+v %v", states, err)
	}

	// Re-enabling resumes from the cursor with a fresh retry budget.
	got.Enabled, got.DisabledReason = true, ""
	if _, err := e.store.UpdateWebhook(ctx, got); err != nil {
		t.Fatal(err)
	}
	ds = claim("d")
	if len(ds) != 1 || ds[0].Delivered != 6 || ds[0].Failures != 0 {
		t.Fatalf("after re-enabling: %+v", ds)
	}

	// The history keeps the newest KeepAttempts.
	for i := range store.KeepAttempts + 5 {
		if err := e.store.RecordAttempt(ctx, store.Attempt{WebhookID: hook.ID, DeliveryID: fmt.Sprint("t", i), Test: true, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := e.store.WebhookAttempts(ctx, hook.ID, 1000)
	if err != nil || len(hist) != store.KeepAttempts || hist[0].DeliveryID != fmt.Sprint("t", store.KeepAttempts+4) {
		t.Fatalf("history: %d attempts, %v", len(hist), err)
	}

	// An endpoint of every account gets a cursor for an account added later, from its first change.
	all, err := e.store.CreateWebhook(ctx, store.Webhook{UserID: acct.UserID, URL: "http://example.test/all", AllAccounts: true},
		func(int64) []byte { return []byte("s") })
	if err != nil {
		t.Fatal(err)
	}
	later, err := e.store.CreateAccount(ctx, store.Account{UserID: acct.UserID, Name: "later", IMAPHost: "h", IMAPPort: 143,
		TLSMode: "none", Login: "l", SecretEnc: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	lw := NewChangeWriter(t, e.store, e.tasks, later.ID, "INBOX")
	if _, err := lw.Write(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ds = claim("e")
	var found bool
	for _, d := range ds {
		if d.Webhook.ID == all.ID && d.AccountID == later.ID {
			found = d.Delivered == 0 && d.Head == 2
		}
	}
	if !found {
		t.Fatalf("no cursor from 0 for the new account: %+v", ds)
	}

	// The database refuses rows no code path writes.
	for _, tc := range []struct{ name, sql string }{
		{"enabled with a reason", `UPDATE webhooks SET disabled_reason = 'x' WHERE id = ` + fmt.Sprint(all.ID)},
		{"disabled without a reason", `UPDATE webhooks SET enabled = false WHERE id = ` + fmt.Sprint(all.ID)},
		{"not an http URL", `UPDATE webhooks SET url = 'ftp://x' WHERE id = ` + fmt.Sprint(all.ID)},
		{"owner without lease expiry", `UPDATE webhook_cursors SET owner = 'z', lease_expires_at = NULL WHERE webhook_id = ` + fmt.Sprint(all.ID)},
		{"failures without a start", `UPDATE webhook_cursors SET failures = 2, failing_since = NULL WHERE webhook_id = ` + fmt.Sprint(all.ID)},
		{"negative cursor", `UPDATE webhook_cursors SET delivered_seq = -1 WHERE webhook_id = ` + fmt.Sprint(all.ID)},
		{"attempt with a status past 599", `UPDATE webhook_attempts SET status = 600`},
		{"attempt with seqs backwards", `UPDATE webhook_attempts SET first_seq = 9, last_seq = 1, count = 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.store.DB().Exec(tc.sql); err == nil {
				t.Fatalf("the database accepted: %s", tc.sql)
			}
		})
	}
	if err := e.store.DeleteWebhook(ctx, hook.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Webhook(ctx, hook.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted webhook: %v", err)
	}
}

// testWebhookClaimsDisjoint has several claimers take pairs at once: no pair is leased twice
// (on PostgreSQL they skip each other's locked rows rather than wait or double up).
func testWebhookClaimsDisjoint(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	first := SeedAccount(t, e.store)
	var hooks []int64
	for i := range 8 {
		a := first
		if i > 0 {
			var err error
			if a, err = e.store.CreateAccount(ctx, store.Account{UserID: first.UserID, Name: fmt.Sprint("a", i), IMAPHost: "h",
				IMAPPort: 143, TLSMode: "none", Login: "l", SecretEnc: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		h, err := e.store.CreateWebhook(ctx, store.Webhook{UserID: first.UserID, URL: "https://example.test/", AccountIDs: []int64{a.ID}},
			func(int64) []byte { return []byte("s") })
		if err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, h.ID)
		if _, err := NewChangeWriter(t, e.store, e.tasks, a.ID, "INBOX").Write(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		seen = map[int64]string{}
		wg   sync.WaitGroup
	)
	for i := range 4 {
		owner := fmt.Sprint("claimer-", i)
		wg.Go(func() {
			for range 4 {
				ds, err := e.store.ClaimDeliveries(ctx, owner, time.Minute, 1, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, d := range ds {
					if prev, dup := seen[d.Webhook.ID]; dup {
						t.Errorf("webhook %d leased by %s and %s", d.Webhook.ID, prev, owner)
					}
					seen[d.Webhook.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != len(hooks) {
		t.Fatalf("%d of %d pairs claimed", len(seen), len(hooks))
	}
}
