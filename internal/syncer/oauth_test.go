package syncer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/oauth"
	"mailsync/internal/oauthtest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// oauthLifecycle is fast, with a heartbeat timeout above the 2-second tokens' refresh period:
// revocation must end a sync within it.
var oauthLifecycle = task.Config{
	HeartbeatInterval: 200 * time.Millisecond,
	HeartbeatTimeout:  3 * time.Second,
	SelfFence:         2 * time.Second,
	ReapInterval:      500 * time.Millisecond,
	QueuedTimeout:     time.Minute,
	MaxAttempts:       1,
	MaxRunTime:        5 * time.Minute,
}

// oauthWorld is a test provider issuing short-lived tokens, a Dovecot validating them, and
// users with generated mail.
type oauthWorld struct {
	prov *oauthtest.Provider
	dc   *imaptest.Dovecot
	ps   *oauth.Providers
}

func newOAuthWorld(t *testing.T, ttl time.Duration) *oauthWorld {
	t.Helper()
	prov := oauthtest.Start(t)
	prov.SetAccessTTL(ttl)
	dc := imaptest.StartDovecot(t, imaptest.WithOAuth2(prov.IntrospectionURL()))
	ps, err := oauth.New(context.Background(), nil, oauth.Provider{Name: "test", ClientID: prov.ClientID,
		ClientSecret: prov.ClientSecret, Issuer: prov.URL(), IMAPHost: dc.Host(), IMAPPort: dc.Port(), IMAPTLS: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return &oauthWorld{prov: prov, dc: dc, ps: ps}
}

// addUser gives the mailbox login n generated messages, Dovecot's index already built.
func (w *oauthWorld) addUser(t *testing.T, login string, n int) {
	t.Helper()
	u := w.dc.AddUser(t, login, "pw-"+login)
	if n > 0 {
		w.dc.WriteMailgen(t, u, mailgen.Options{Seed: 5, Messages: n})
	}
	warm(t, server{host: w.dc.Host(), port: w.dc.Port(), login: login, passwd: u.Password})
}

// account stores an OAuth2 account for login, signed in through the provider.
func (w *oauthWorld) account(t *testing.T, st *store.Store, box *secret.Box, login string) store.Account {
	t.Helper()
	access, refresh, expiry := w.prov.Issue(login)
	ts := oauth.TokenSet{Access: access, Refresh: refresh, Issued: time.Now(), Expiry: expiry}
	return storetest.SeedOAuthAccount(t, st, login, w.dc.Host(), w.dc.Port(), ts.Seal(box, login, w.dc.Host()), expiry)
}

// oauthWorker runs a worker with the syncer over st until the test ends.
func oauthWorker(t *testing.T, st *store.Store, box *secret.Box, ps *oauth.Providers, tasks *task.Manager, opts syncer.Options, n int) {
	t.Helper()
	opts.Tokens = oauth.NewTokens(st, box, ps, oauth.Options{Poll: 10 * time.Millisecond})
	opts.CommandTimeout = 20 * time.Second
	s := syncer.New(st, box, opts)
	w := worker.New(tasks, s.Run, worker.Config{Concurrency: n, PollInterval: 10 * time.Millisecond})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

func randomBox(t *testing.T) *secret.Box {
	t.Helper()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	return newBox(t, key)
}

func waitTask(t *testing.T, tasks *task.Manager, id string, within time.Duration) task.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tk, err := tasks.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !tk.State.Active() {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after %s (phase %q)", id, tk.State, within, tk.Progress.Phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func storedMessages(t *testing.T, st *store.Store, accountID int64) int {
	t.Helper()
	var n int
	if err := st.DB().QueryRow(`SELECT count(*) FROM messages WHERE account_id = $1`, accountID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOAuthSyncOutlivesItsTokens syncs a few thousand messages (slowed down so that the sync
// lasts several token lifetimes) with access tokens that live 2 seconds: the sync succeeds, and
// the provider sees about one refresh per lifetime, never two at once, never a rotated refresh
// token again.
func TestOAuthSyncOutlivesItsTokens(t *testing.T) {
	const n = 3000
	w := newOAuthWorld(t, 2*time.Second)
	w.addUser(t, "alice", n)
	st := storetest.Open(t, "sqlite")
	box := randomBox(t)
	tasks, err := task.NewManager(st, oauthLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	a := w.account(t, st, box, "alice")
	oauthWorker(t, st, box, w.ps, tasks, syncer.Options{
		Fetched: func(string, uint32) { time.Sleep(2 * time.Millisecond) },
	}, 1)
	began := time.Now()
	tk, _, err := tasks.Start(context.Background(), a.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	tk = waitTask(t, tasks, tk.ID, 3*time.Minute)
	took := time.Since(began)
	if tk.State != task.Succeeded {
		t.Fatalf("sync %s: %s", tk.State, tk.Error)
	}
	if got := storedMessages(t, st, a.ID); got != n {
		t.Fatalf("stored %d messages, want %d", got, n)
	}
	refreshes := w.prov.Count("token:refresh_token", "alice")
	// A 2 s token is refreshed when a quarter of its life is left: every 1.5 s at most.
	most := int(took/(1500*time.Millisecond)) + 1
	least := int(took/(2*time.Second)) - 1
	t.Logf("sync of %d messages took %s; %d refreshes (expected %d..%d)", n, took.Round(time.Millisecond), refreshes, least, most)
	if took < 4*time.Second {
		t.Fatalf("the sync took %s: too short to outlive its tokens", took)
	}
	if refreshes < max(least, 1) || refreshes > most {
		t.Errorf("%d refreshes in %s, want %d..%d (one per token lifetime)", refreshes, took, least, most)
	}
	if m, r := w.prov.MaxConcurrentRefreshes(), w.prov.Reused(); m > 1 || r != 0 {
		t.Errorf("refreshes in flight at once %d, rotated refresh tokens spent again %d", m, r)
	}
}

// TestOAuthRevokedMidSync revokes the authorization while a sync runs: the task fails with an
// auth error within one heartbeat timeout, the account is reauth_required, and from then on no
// token request and no IMAP login is made for it, Sync now included.
func TestOAuthRevokedMidSync(t *testing.T) {
	w := newOAuthWorld(t, 2*time.Second)
	w.addUser(t, "bob", 2000)
	st := storetest.Open(t, "sqlite")
	box := randomBox(t)
	tasks, err := task.NewManager(st, oauthLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	a := w.account(t, st, box, "bob")
	var fetched atomic.Int64
	oauthWorker(t, st, box, w.ps, tasks, syncer.Options{
		Fetched: func(string, uint32) {
			fetched.Add(1)
			time.Sleep(5 * time.Millisecond)
		},
	}, 1)
	ctx := context.Background()
	tk, _, err := tasks.Start(ctx, a.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	for fetched.Load() < 100 {
		time.Sleep(10 * time.Millisecond)
	}
	w.prov.Revoke("bob")
	revoked := time.Now()
	tk = waitTask(t, tasks, tk.ID, time.Minute)
	after := time.Since(revoked)
	t.Logf("task ended %s after the revocation: %s: %s", after.Round(time.Millisecond), tk.State, tk.Error)
	if tk.State != task.Failed || !strings.Contains(tk.Error, "auth error") || !strings.Contains(tk.Error, "sign in again") {
		t.Fatalf("task %s: %q; want failed with an auth error saying to sign in again", tk.State, tk.Error)
	}
	if after > oauthLifecycle.HeartbeatTimeout {
		t.Errorf("the task ended %s after the revocation, more than the heartbeat timeout %s", after, oauthLifecycle.HeartbeatTimeout)
	}
	got, err := st.Account(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ReauthRequired() {
		t.Fatalf("account state %q, want reauth_required", got.AuthState)
	}
	tokenReqs, logins := w.prov.Count("token:refresh_token", "bob"), w.prov.Count("introspect", "bob")

	// Another sync of the account (a scheduler would not start one; a client might): it fails
	// at once, asking nobody.
	again, _, err := tasks.Start(ctx, a.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	again = waitTask(t, tasks, again.ID, 10*time.Second)
	if again.State != task.Failed || !strings.Contains(again.Error, "sign in again") {
		t.Errorf("sync of a reauth_required account: %s %q", again.State, again.Error)
	}
	time.Sleep(3 * time.Second) // a keeper or watcher left running would ask by now
	if tr, li := w.prov.Count("token:refresh_token", "bob"), w.prov.Count("introspect", "bob"); tr != tokenReqs || li != logins {
		t.Errorf("after reauth_required: token requests %d → %d, IMAP logins %d → %d; want none", tokenReqs, tr, logins, li)
	}
}

// TestOAuthConcurrentSyncsTwoInstances runs ten accounts' syncs at once on two instances sharing
// one PostgreSQL database, with 2-second tokens: the provider never sees two refreshes of one
// user's token at once, nor a rotated refresh token spent again.
func TestOAuthConcurrentSyncsTwoInstances(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	w := newOAuthWorld(t, 2*time.Second)
	st1 := storetest.OpenDSN(t, dsn, true)
	st2 := storetest.OpenDSN(t, dsn, false)
	box := randomBox(t)
	var tms []*task.Manager
	for _, st := range []*store.Store{st1, st2} {
		tm, err := task.NewManager(st, oauthLifecycle)
		if err != nil {
			t.Fatal(err)
		}
		tms = append(tms, tm)
		oauthWorker(t, st, box, w.ps, tm, syncer.Options{Fetched: func(string, uint32) { time.Sleep(10 * time.Millisecond) }}, 5)
	}
	var accts []store.Account
	for i := range 10 {
		login := fmt.Sprintf("user%d", i)
		u := w.dc.AddUser(t, login, "pw-"+login)
		w.dc.WriteMailgen(t, u, mailgen.Options{Seed: int64(i), Messages: 300})
		accts = append(accts, w.account(t, st1, box, login))
	}
	// Dovecot re-reads its passwd-file when its modification time changes: users added within
	// one second of its last read are seen once a later second's write changes it again.
	time.Sleep(1100 * time.Millisecond)
	w.dc.AddUser(t, "late", "pw")
	var wg sync.WaitGroup
	errs := make(chan error, len(accts))
	for i, a := range accts {
		wg.Go(func() {
			tk, _, err := tms[i%2].Start(context.Background(), a.ID, false)
			if err != nil {
				errs <- err
				return
			}
			tk = waitTask(t, tms[i%2], tk.ID, 3*time.Minute)
			if tk.State != task.Succeeded {
				errs <- fmt.Errorf("account %d: %s: %s", a.ID, tk.State, tk.Error)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for i := range accts {
		total += w.prov.Count("token:refresh_token", fmt.Sprintf("user%d", i))
	}
	t.Logf("%d refreshes over ten accounts", total)
	if total == 0 {
		t.Error("no refresh: the syncs did not outlive their tokens")
	}
	if m, r := w.prov.MaxConcurrentRefreshes(), w.prov.Reused(); m > 1 || r != 0 {
		t.Errorf("refreshes of one token in flight at once %d (want 1), rotated refresh tokens spent again %d (want 0)", m, r)
	}

	// The database holds the tokens sealed only: a dump has none of those the provider issued.
	dump := pgDump(t, dsn)
	issued := w.prov.Issued()
	for _, tok := range issued {
		if strings.Contains(dump, tok) {
			t.Fatalf("the PostgreSQL dump holds a token the provider issued")
		}
	}
	t.Logf("none of the %d tokens issued is in the %d-byte dump", len(issued), len(dump))
}

// pgDump returns a plain dump of the test schema dsn names.
func pgDump(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	schema := q.Get("search_path")
	q.Del("search_path")
	u.RawQuery = q.Encode()
	if _, err := exec.LookPath("pg_dump"); err != nil {
		t.Skip("no pg_dump on PATH (Debian's postgresql-client)")
	}
	out, err := exec.Command("pg_dump", "--schema="+schema, "--data-only", u.String()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !strings.Contains(string(out), "accounts") {
		t.Fatalf("the dump has no accounts table: %.300s", out)
	}
	return string(out)
}

// TestOAuthIdleReauthenticates holds an IDLE with 2-second tokens for several lifetimes: the
// watch signs in again with a fresh token before each expiry (every login is introspected), and
// still reports new mail.
func TestOAuthIdleReauthenticates(t *testing.T) {
	w := newOAuthWorld(t, 2*time.Second)
	w.addUser(t, "erin", 0)
	st := storetest.Open(t, "sqlite")
	box := randomBox(t)
	a := w.account(t, st, box, "erin")
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := syncer.New(st, box, syncer.Options{Logger: log, Tokens: oauth.NewTokens(st, box, w.ps, oauth.Options{Logger: log})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, a, func() { changes <- struct{}{} }) }()

	time.Sleep(6 * time.Second)
	c := w.dc.Client(t, imaptest.User{Login: "erin", Password: "pw-erin"})
	c.AddMessage("INBOX", []byte("Subject: hi\r\n\r\nnew mail\r\n"))
	select {
	case <-changes:
	case err := <-done:
		t.Fatalf("Watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("new mail not reported after the watch outlived its first tokens")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v", err)
	}
	logins, refreshes := w.prov.Count("introspect", "erin"), w.prov.Count("token:refresh_token", "erin")
	t.Logf("%d logins, %d refreshes in about 6 s", logins, refreshes)
	if logins < 3 || refreshes < 3 {
		t.Errorf("%d logins and %d refreshes in 6 s of 2 s tokens: the watch did not sign in again before each expiry", logins, refreshes)
	}
}
