package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// Run runs the whole conformance suite on every dialect.
func Run(t *testing.T) {
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, d)
				})
			}
		})
	}
}

var suite = []struct {
	name string
	fn   func(t *testing.T, dialect string)
}{
	{"StartIsIdempotentUnderConcurrency", testStartConcurrent},
	{"DatabaseRefusesImpossibleRows", testImpossibleRows},
	{"ZombieIsFenced", testZombieFenced},
	{"ReaperBoundaries", testReaperBoundaries},
	{"ReaperSparesTaskThatHeartbeatsMidReap", testReaperRace},
	{"ConcurrentReapersReapOnce", testConcurrentReapers},
	{"ReaperSkipsLockedRow", testReaperSkipsLockedRow},
	{"StartDoesNotWaitForLockedRow", testStartDoesNotWaitForLockedRow},
	{"HeartbeatFailsFastOnLockedRow", testHeartbeatFailsFastOnLockedRow},
	{"CancelDoesNotWaitForLockedRow", testCancelDoesNotWaitForLockedRow},
	{"StartReplacesDeadTaskWithoutReaper", testSelfHeal},
	{"StartEndsADeadCancelledTaskCancelled", testSelfHealAfterCancel},
	{"TaskThatAlwaysDiesFailsAfterMaxAttempts", testMaxAttempts},
	{"Cancel", testCancel},
	{"InterruptKeepsAttempt", testInterrupt},
	{"ProgressNeverGoesBackWithinARun", testProgressMonotonic},
	{"Liveness", testLiveness},
	{"MigrationRepairsInconsistentRows", testMigrationRepairs},
	{"SchemaNewerThanBinary", testSchemaTooNew},
	{"StateMachine", testStateMachine},
	{"Tokens", testTokens},
	{"Credentials", testCredentials},
	{"AccountUpdateDelete", testAccountUpdateDelete},
	{"MessageListing", testMessageListing},
	{"TaskCounts", testTaskCounts},
	{"TaskWithOwner", testTaskWithOwner},
	{"MailBatches", testMailBatches},
	{"ClaimAccountTakesOnlyThatAccount", testClaimAccount},
	{"AttemptLog", testAttemptLog},
	{"FollowNeverWaitsOnADeadTask", testFollow},
	{"LargeMessagesInPieces", testLargeMessagesInPieces},
	{"StalledSince", testStalledSince},
	{"DeathsCounted", testDeathsCounted},
	{"MigrationCountsOldDeaths", testMigrationCountsOldDeaths},
	{"ChangeLog", testChangeLog},
	{"Webhooks", testWebhooks},
	{"WebhookClaimsAreDisjoint", testWebhookClaimsDisjoint},
	{"TaskEndsInChangeLog", testTaskEndsInChangeLog},
	{"RenameChanges", testRenameChanges},
	{"OAuthRefreshIsFenced", testOAuthRefreshFence},
	{"ActionsAreIdempotent", testActionsIdempotent},
	{"ActionsAreFenced", testActionsFenced},
	{"ActionsEditTheStoreAsTheyFinish", testActionsLocalEdits},
}

// env is one test's database, lifecycle and clock.
type env struct {
	store *store.Store
	tasks *task.Manager
	clock *Clock
}

func newEnv(t *testing.T, dialect string) env {
	t.Helper()
	s := Open(t, dialect)
	m, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := NewClock()
	m.Now = c.Now
	return env{store: s, tasks: m, clock: c}
}

func (e env) start(t *testing.T, accountID int64) task.Task {
	t.Helper()
	tk, _, err := e.tasks.Start(context.Background(), accountID, false)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (e env) claim(t *testing.T, owner string) task.Task {
	t.Helper()
	tk, ok, err := e.tasks.Claim(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("%s found nothing to claim", owner)
	}
	return tk
}

func (e env) get(t *testing.T, id string) task.Task {
	t.Helper()
	tk, err := e.tasks.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (e env) reap(t *testing.T) []task.Task {
	t.Helper()
	reaped, err := e.tasks.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return reaped
}

func wantState(t *testing.T, tk task.Task, want task.State) {
	t.Helper()
	if tk.State != want {
		t.Fatalf("task %s is %s (error %q), want %s", tk.ID, tk.State, tk.Error, want)
	}
}

func wantLeaseLost(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, task.ErrLeaseLost) {
		t.Fatalf("%s: got %v, want ErrLeaseLost", what, err)
	}
}

func testStartConcurrent(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	const n = 50
	var (
		wg      sync.WaitGroup
		ids     = make([]string, n)
		created = make([]bool, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			tk, c, err := e.tasks.Start(context.Background(), acct.ID, false)
			ids[i], created[i], errs[i] = tk.ID, c, err
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("call %d got task %s, call 0 got %s", i, ids[i], ids[0])
		}
		if created[i] {
			nCreated++
		}
	}
	if nCreated != 1 {
		t.Fatalf("created was true %d times, want once", nCreated)
	}
	if got := CountTasks(t, e.store, acct.ID); got != 1 {
		t.Fatalf("%d task rows, want 1", got)
	}

	// Once that task has ended, Start makes a new one.
	tk := e.claim(t, "w1")
	if _, err := e.tasks.Finish(context.Background(), tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
		t.Fatal(err)
	}
	next, c, err := e.tasks.Start(context.Background(), acct.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if !c || next.ID == ids[0] {
		t.Fatalf("Start after the task ended: created=%v id=%s, want a new task", c, next.ID)
	}
}

func testImpossibleRows(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	active := e.start(t, acct.ID)
	other := SeedAccount(t, e.store)

	const cols = `(id, account_id, state, owner, created_at, started_at, finished_at, messages_total, messages_done, folders_total, folders_done)`
	cases := []struct {
		name string
		sql  string
		args []any
	}{
		{"second active task for an account", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'queued', NULL, 1, NULL, NULL, 0, 0, 0, 0)`,
			[]any{"dup", acct.ID}},
		{"running without owner", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'running', NULL, 1, 1, NULL, 0, 0, 0, 0)`,
			[]any{"no-owner", other.ID}},
		{"running without start time", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'running', 'w', 1, NULL, NULL, 0, 0, 0, 0)`,
			[]any{"no-start", other.ID}},
		{"active with finished_at", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'queued', NULL, 1, NULL, 5, 0, 0, 0, 0)`,
			[]any{"active-finished", other.ID}},
		{"terminal without finished_at", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'failed', NULL, 1, NULL, NULL, 0, 0, 0, 0)`,
			[]any{"failed-open", other.ID}},
		{"unknown state", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'syncing', NULL, 1, NULL, NULL, 0, 0, 0, 0)`,
			[]any{"syncing", other.ID}},
		{"succeeded with messages left", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'succeeded', NULL, 1, NULL, 5, 10, 9, 0, 0)`,
			[]any{"incomplete", other.ID}},
		{"more done than total", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'failed', NULL, 1, NULL, 5, 1, 2, 0, 0)`,
			[]any{"overdone", other.ID}},
		{"negative counter", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'failed', NULL, 1, NULL, 5, 0, 0, 0, -1)`,
			[]any{"negative", other.ID}},
		{"same task id twice", `INSERT INTO sync_tasks ` + cols + ` VALUES ($1, $2, 'failed', NULL, 1, NULL, 5, 0, 0, 0, 0)`,
			[]any{active.ID, other.ID}},
		{"active task turned to unknown state", `UPDATE sync_tasks SET state = 'syncing' WHERE id = $1`, []any{active.ID}},
		{"queued task marked running without owner", `UPDATE sync_tasks SET state = 'running', started_at = 1 WHERE id = $1`, []any{active.ID}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.store.DB().Exec(tc.sql, tc.args...); err == nil {
				t.Fatalf("the database accepted: %s", tc.sql)
			}
		})
	}
	// The one legal row of the same shape goes in, so the refusals above are the constraints'.
	if _, err := e.store.DB().Exec(`INSERT INTO sync_tasks `+cols+` VALUES ($1, $2, 'failed', NULL, 1, NULL, 5, 3, 2, 1, 1)`, "legal", other.ID); err != nil {
		t.Fatalf("a legal row was refused: %v", err)
	}
}

func testZombieFenced(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	a := e.claim(t, "worker-a")
	if _, err := e.tasks.Heartbeat(ctx, a.Lease(), task.Progress{Phase: "fetch", MessagesTotal: 10, MessagesDone: 3}); err != nil {
		t.Fatal(err)
	}
	// A pauses; the timeout passes; the reaper gives the task back to the queue.
	e.clock.Advance(61 * time.Second)
	reaped := e.reap(t)
	if len(reaped) != 1 || reaped[0].State != task.Queued {
		t.Fatalf("reaped %+v, want the task re-queued", reaped)
	}
	b := e.claim(t, "worker-b")
	if b.ID != a.ID || b.Epoch <= a.Epoch || b.Attempt != 2 {
		t.Fatalf("B claimed %s epoch %d attempt %d; A had %s epoch %d", b.ID, b.Epoch, b.Attempt, a.ID, a.Epoch)
	}
	// A wakes up: everything it writes is refused.
	_, err := e.tasks.Heartbeat(ctx, a.Lease(), task.Progress{MessagesTotal: 10, MessagesDone: 9})
	wantLeaseLost(t, "zombie heartbeat", err)
	_, err = e.tasks.Finish(ctx, a.Lease(), task.Failed, task.Progress{}, "zombie says it failed")
	wantLeaseLost(t, "zombie finish", err)
	_, err = e.tasks.Interrupt(ctx, a.Lease(), task.Progress{})
	wantLeaseLost(t, "zombie interrupt", err)
	testZombieDataWrite(t, e, a.Lease())

	// B's work stands.
	if _, err := e.tasks.Heartbeat(ctx, b.Lease(), task.Progress{MessagesTotal: 10, MessagesDone: 5}); err != nil {
		t.Fatal(err)
	}
	done, err := e.tasks.Finish(ctx, b.Lease(), task.Succeeded, task.Progress{MessagesTotal: 10, MessagesDone: 10}, "")
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, done, task.Succeeded)
	if done.Owner != "worker-b" || done.Progress.MessagesDone != 10 || done.Error != "" {
		t.Fatalf("final row %+v", done)
	}
}

func testReaperBoundaries(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	finished := SeedAccount(t, e.store)

	// A terminal row, old enough to look dead by every measure.
	e.start(t, finished.ID)
	f := e.claim(t, "w")
	if _, err := e.tasks.Finish(ctx, f.Lease(), task.Failed, task.Progress{}, "boom"); err != nil {
		t.Fatal(err)
	}
	before := e.get(t, f.ID)

	e.start(t, acct.ID)
	r := e.claim(t, "w")
	e.clock.Advance(59 * time.Second)
	if got := e.reap(t); len(got) != 0 {
		t.Fatalf("silent 59 s: reaped %+v", got)
	}
	wantState(t, e.get(t, r.ID), task.Running)
	e.clock.Advance(2 * time.Second)
	got := e.reap(t)
	if len(got) != 1 || got[0].ID != r.ID {
		t.Fatalf("silent 61 s: reaped %+v, want %s", got, r.ID)
	}
	e.clock.Advance(time.Hour)
	e.reap(t)
	after := e.get(t, f.ID)
	after.ObservedAt = before.ObservedAt
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the reaper changed a terminal row:\n before %+v\n after  %+v", before, after)
	}
}

// testReaperRace holds a heartbeat open in a transaction while the reaper runs: the reaper's
// UPDATE waits for the row, then re-checks the heartbeat and leaves the task alone.
func testReaperRace(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	r := e.claim(t, "w")
	e.clock.Advance(61 * time.Second) // dead by the clock the reaper will use

	tx, err := e.store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE sync_tasks SET heartbeat_at = $1 WHERE id = $2`, e.clock.Now().UnixMilli(), r.ID); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan []task.Task, 1)
	go func() {
		got, err := e.tasks.Reap(ctx)
		if err != nil {
			t.Error(err)
		}
		reaped <- got
	}()
	time.Sleep(200 * time.Millisecond) // let the reaper reach the row
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := <-reaped; len(got) != 0 {
		t.Fatalf("reaped a task that heartbeat during the reap: %+v", got)
	}
	wantState(t, e.get(t, r.ID), task.Running)
}

func testConcurrentReapers(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	const accounts = 10
	for range accounts {
		e.start(t, SeedAccount(t, e.store).ID)
		e.claim(t, "w")
	}
	e.clock.Advance(2 * time.Minute)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count = map[string]int{}
	)
	for range 8 {
		wg.Go(func() {
			got, err := e.tasks.Reap(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, tk := range got {
				count[tk.ID]++
			}
		})
	}
	wg.Wait()
	if len(count) != accounts {
		t.Fatalf("%d tasks reaped, want %d", len(count), accounts)
	}
	for id, n := range count {
		if n != 1 {
			t.Fatalf("task %s reaped %d times", id, n)
		}
	}
}

func testSelfHeal(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	dead := e.claim(t, "crashed")

	e.clock.Advance(59 * time.Second)
	if tk, created, _ := e.tasks.Start(ctx, acct.ID, false); created || tk.ID != dead.ID {
		t.Fatalf("before the timeout Start must join the running task, got %s created=%v", tk.ID, created)
	}
	e.clock.Advance(2 * time.Second) // no reaper runs in this test
	fresh, created, err := e.tasks.Start(ctx, acct.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if !created || fresh.ID == dead.ID {
		t.Fatalf("after the timeout Start returned %s created=%v, want a new task", fresh.ID, created)
	}
	old := e.get(t, dead.ID)
	wantState(t, old, task.Failed)
	if old.Error == "" {
		t.Fatal("the replaced task carries no error")
	}
}

// testSelfHealAfterCancel: a dead task whose cancel was requested, replaced by a Start before any
// reaper saw it, ends cancelled (as a reap ends it), and its death is not counted: the user stopped it.
func testSelfHealAfterCancel(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	e.start(t, acct.ID)
	dead := e.claim(t, "crashed")
	if _, err := e.tasks.Cancel(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(61 * time.Second) // the worker died before it saw the cancel; no reaper runs
	fresh, created, err := e.tasks.Start(ctx, acct.ID, false)
	if err != nil || !created || fresh.ID == dead.ID {
		t.Fatalf("Start after the timeout: %s created=%v err=%v, want a new task", fresh.ID, created, err)
	}
	old := e.get(t, dead.ID)
	wantState(t, old, task.Cancelled)
	if old.Deaths != 0 {
		t.Fatalf("the cancelled task counts %d deaths, want 0", old.Deaths)
	}
}

func testMaxAttempts(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	acct := SeedAccount(t, e.store)
	tk := e.start(t, acct.ID)
	max := e.tasks.Config().MaxAttempts
	for attempt := 1; attempt <= max; attempt++ {
		c := e.claim(t, fmt.Sprintf("doomed-%d", attempt))
		if c.Attempt != attempt {
			t.Fatalf("claim %d has attempt %d", attempt, c.Attempt)
		}
		e.clock.Advance(61 * time.Second) // the worker dies every time
		e.reap(t)
	}
	final := e.get(t, tk.ID)
	wantState(t, final, task.Failed)
	if _, ok, _ := e.tasks.Claim(context.Background(), "another"); ok {
		t.Fatal("a task past its max attempts was claimed again")
	}
}

func testCancel(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	queued := e.start(t, SeedAccount(t, e.store).ID)
	c, err := e.tasks.Cancel(ctx, queued.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, c, task.Cancelled)
	if _, ok, _ := e.tasks.Claim(ctx, "w"); ok {
		t.Fatal("a cancelled task was claimed")
	}

	e.start(t, SeedAccount(t, e.store).ID)
	running := e.claim(t, "w")
	c, err = e.tasks.Cancel(ctx, running.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, c, task.Running)
	stop, err := e.tasks.Heartbeat(ctx, running.Lease(), task.Progress{})
	if err != nil || !stop {
		t.Fatalf("heartbeat after cancel: stop=%v err=%v, want stop", stop, err)
	}
	done, err := e.tasks.Finish(ctx, running.Lease(), task.Cancelled, task.Progress{}, "cancelled by the user")
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, done, task.Cancelled)
	// Cancelling a finished task changes nothing.
	again, err := e.tasks.Cancel(ctx, running.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.State != task.Cancelled || !again.FinishedAt.Equal(done.FinishedAt) {
		t.Fatalf("cancel of a finished task changed it: %+v", again)
	}
}

func testInterrupt(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	tk := e.start(t, SeedAccount(t, e.store).ID)
	r := e.claim(t, "w")
	back, err := e.tasks.Interrupt(ctx, r.Lease(), task.Progress{MessagesTotal: 10, MessagesDone: 4})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, back, task.Queued)
	if back.Attempt != 0 || back.Progress.MessagesDone != 4 {
		t.Fatalf("interrupted task %+v: want attempt 0 and the checkpointed progress", back)
	}
	again := e.claim(t, "w2")
	if again.ID != tk.ID || again.Attempt != 1 {
		t.Fatalf("re-claim got %s attempt %d", again.ID, again.Attempt)
	}
	_, err = e.tasks.Heartbeat(ctx, r.Lease(), task.Progress{})
	wantLeaseLost(t, "heartbeat under the interrupted epoch", err)
}

// testLiveness uses the real database clock: a task stops being live the moment its heartbeat is
// older than the timeout, before any reaper has run.
func testLiveness(t *testing.T, dialect string) {
	s := Open(t, dialect)
	cfg := task.Config{
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: 600 * time.Millisecond,
		SelfFence: 400 * time.Millisecond, ReapInterval: time.Hour, QueuedTimeout: time.Hour,
		MaxAttempts: 3, MaxRunTime: time.Hour,
	}
	m, err := task.NewManager(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tk, _, err := m.Start(ctx, SeedAccount(t, s).ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Claim(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	get := func() task.Task {
		got, err := m.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if !m.Live(get()) {
		t.Fatal("a task that just heartbeat is not live")
	}
	time.Sleep(cfg.HeartbeatTimeout + 100*time.Millisecond)
	dead := get()
	if m.Live(dead) || dead.State != task.Running {
		t.Fatalf("silent past the timeout: live=%v state=%s, want not live and still running (no reaper ran)", m.Live(dead), dead.State)
	}
}

// testZombieDataWrite checks that a batch written under a lost lease changes nothing.
func testZombieDataWrite(t *testing.T, e env, zombie task.Lease) {
	t.Helper()
	ctx := context.Background()
	tk := e.get(t, zombie.TaskID)
	_, err := e.store.CommitBatch(ctx, zombie, task.Progress{}, store.Batch{
		Folder:   store.Folder{AccountID: tk.AccountID, Name: "INBOX", UIDValidity: 1, UIDNext: 2},
		Messages: []store.Message{{UID: 1, Raw: []byte("Subject: zombie\r\n\r\nbody")}},
	})
	wantLeaseLost(t, "zombie data write", err)
	folders, err := e.store.Folders(ctx, tk.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	if len(folders) != 0 {
		t.Fatalf("the zombie's batch left folders behind: %+v", folders)
	}
}

// seedV1Account is SeedAccount for a database at schema version 1, written with that version's
// columns only: the store's own statements speak the newest schema.
func seedV1Account(t *testing.T, s *store.Store) store.Account {
	t.Helper()
	var a store.Account
	err := s.DB().QueryRow(`INSERT INTO users (email, password_hash, created_at) VALUES ($1, 'x', 1) RETURNING id`,
		rand.Text()+"@example.test").Scan(&a.UserID)
	if err == nil {
		err = s.DB().QueryRow(`INSERT INTO accounts (user_id, name, imap_host, imap_port, tls_mode, login, secret_enc, created_at)
			VALUES ($1, 'acct', '127.0.0.1', 143, 'none', 'bob', $2, 1) RETURNING id`, a.UserID, []byte("sealed")).Scan(&a.ID)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testMigrationRepairs seeds a database as an older binary (or a crash, or a hand edit) could
// have left it, then migrates: the migration must repair every row and then constrain.
func testMigrationRepairs(t *testing.T, dialect string) {
	ctx := context.Background()
	s := OpenDSN(t, DSN(t, dialect), false)
	if _, err := s.MigrateTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	a1, a2, a3 := seedV1Account(t, s), seedV1Account(t, s), seedV1Account(t, s)
	const ins = `INSERT INTO sync_tasks (id, account_id, state, owner, created_at, started_at, heartbeat_at, finished_at, messages_total, messages_done, folders_total, folders_done)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`
	rows := [][]any{
		{"two-active-old", a1.ID, "running", "w", 1, 1, 1, nil, 10, 5, 1, 0},
		{"two-active-new", a1.ID, "queued", nil, 2, nil, nil, nil, 0, 0, 0, 0},
		{"no-owner", a2.ID, "running", nil, 1, 1, 1, nil, 0, 0, 0, 0},
		{"active-finished", a3.ID, "queued", nil, 1, nil, nil, 9, 0, 0, 0, 0},
		{"unknown-state", a3.ID, "syncing", "w", 1, 1, 1, nil, 0, 0, 0, 0},
		{"incomplete-success", a3.ID, "succeeded", "w", 1, 1, 1, 5, 10, 7, 0, 0},
		{"terminal-open", a3.ID, "failed", "w", 1, 1, 4, nil, 0, 0, 0, 0},
		{"overdone", a3.ID, "failed", "w", 1, 1, 1, 5, 3, 8, 1, 4},
	}
	for _, r := range rows {
		if _, err := s.DB().ExecContext(ctx, ins, r...); err != nil {
			t.Fatalf("seed %v: %v", r[0], err)
		}
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate over inconsistent rows: %v", err)
	}
	want := map[string]task.State{
		"two-active-old": task.Failed, "two-active-new": task.Queued, "no-owner": task.Failed,
		"active-finished": task.Failed, "unknown-state": task.Failed, "incomplete-success": task.Succeeded,
		"terminal-open": task.Failed, "overdone": task.Failed,
	}
	for id, state := range want {
		tk, err := s.Task(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantState(t, tk, state)
		if id != "two-active-new" && id != "incomplete-success" && id != "terminal-open" && id != "overdone" && tk.Error == "" {
			t.Errorf("repaired task %s says nothing of why", id)
		}
	}
	if tk, _ := s.Task(ctx, "terminal-open"); tk.FinishedAt.IsZero() {
		t.Error("a terminal task was left without finished_at")
	}
	// The constraints are now in force.
	if _, err := s.DB().ExecContext(ctx, ins, "second-active", a1.ID, "queued", nil, 3, nil, nil, nil, 0, 0, 0, 0); err == nil {
		t.Fatal("after the migration a second active task was accepted")
	}
}

func testSchemaTooNew(t *testing.T, dialect string) {
	ctx := context.Background()
	s := Open(t, dialect)
	_, known, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A newer mailsync recorded a migration this binary does not know.
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, known+1); err != nil {
		t.Fatal(err)
	}
	_, err = s.Migrate(ctx)
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("migrate on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// testProgressMonotonic: a heartbeat carrying older figures than a batch already wrote leaves the
// newer ones; a new run (a new claim) counts from zero.
func testProgressMonotonic(t *testing.T, dialect string) {
	ctx := context.Background()
	e := newEnv(t, dialect)
	tk := e.start(t, SeedAccount(t, e.store).ID)
	r := e.claim(t, "w")
	newer := task.Progress{Phase: "fetching INBOX", FoldersTotal: 2, FoldersDone: 1, MessagesTotal: 100, MessagesDone: 60, BytesDone: 6000, New: 60}
	older := task.Progress{Phase: "fetching INBOX", FoldersTotal: 2, MessagesTotal: 100, MessagesDone: 40, BytesDone: 4000, New: 40}
	for _, p := range []task.Progress{newer, older} {
		if _, err := e.tasks.Heartbeat(ctx, r.Lease(), p); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.get(t, tk.ID).Progress; got != newer {
		t.Fatalf("after a stale heartbeat the progress is %+v, want %+v", got, newer)
	}
	e.clock.Advance(61 * time.Second)
	e.reap(t)
	again := e.claim(t, "w2")
	if again.Progress.MessagesDone != 0 || again.Progress.MessagesTotal != 0 {
		t.Fatalf("a new run starts with the old run's progress: %+v", again.Progress)
	}
}
