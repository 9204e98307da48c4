package worker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// fast is a lifecycle sped up for tests: dead after one second.
var fast = task.Config{
	HeartbeatInterval: 100 * time.Millisecond,
	HeartbeatTimeout:  time.Second,
	SelfFence:         700 * time.Millisecond,
	ReapInterval:      200 * time.Millisecond,
	QueuedTimeout:     time.Minute,
	MaxAttempts:       3,
	MaxRunTime:        time.Minute,
	CrashBackoff:      5 * time.Minute,
	CrashBackoffMax:   time.Hour,
}

const (
	helperEnv = "MAILSYNC_WORKER_HELPER_DSN"
	// crashEnv set makes the helper's body crash the whole process, as a fatal runtime error or a
	// panic outside the worker's recover would.
	crashEnv = "MAILSYNC_WORKER_HELPER_CRASH"
)

// TestMain doubles as the worker process of the subprocess tests: run with helperEnv set, the test
// binary is a worker on that database until it gets SIGTERM.
func TestMain(m *testing.M) {
	if dsn := os.Getenv(helperEnv); dsn != "" {
		os.Exit(helperWorker(dsn))
	}
	os.Exit(m.Run())
}

func helperWorker(dsn string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	g := &gatedStore{Store: s}
	tasks, err := task.NewManager(g, fast)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// SIGUSR1 asks the worker to stop itself with SIGSTOP at a moment when no statement of its is in
	// flight. A process stopped inside a transaction would hold its locks until it resumes (on SQLite,
	// the one write lock), which tests something else: here the zombie must be a clean pause.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			g.gate.Lock()
			fmt.Println("pausing")
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			g.gate.Unlock()
		}
	}()
	body := writingBody(g.CommitBatch, 1<<30, func(line string) { fmt.Println(line) })
	if os.Getenv(crashEnv) != "" {
		body = crashingBody(s)
	}
	w := worker.New(tasks, body, worker.Config{
		Owner: fmt.Sprintf("helper-%d", os.Getpid()), PollInterval: 20 * time.Millisecond,
	})
	_ = w.Run(ctx)
	fmt.Println("exited")
	return 0
}

// gatedStore lets the helper pause between statements: every call the worker makes holds the gate
// for reading.
type gatedStore struct {
	*store.Store
	gate sync.RWMutex
}

func (g *gatedStore) ClaimTask(ctx context.Context, owner string, now time.Time) (task.Task, error) {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Store.ClaimTask(ctx, owner, now)
}

func (g *gatedStore) Heartbeat(ctx context.Context, l task.Lease, p task.Progress, now time.Time) (time.Time, error) {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Store.Heartbeat(ctx, l, p, now)
}

func (g *gatedStore) FinishTask(ctx context.Context, l task.Lease, st task.State, p task.Progress, msg string, now time.Time) (task.Task, error) {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Store.FinishTask(ctx, l, st, p, msg, now)
}

func (g *gatedStore) InterruptTask(ctx context.Context, l task.Lease, p task.Progress, now time.Time) (task.Task, error) {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Store.InterruptTask(ctx, l, p, now)
}

func (g *gatedStore) CommitBatch(ctx context.Context, l task.Lease, p task.Progress, b store.Batch) (int64, error) {
	g.gate.RLock()
	defer g.gate.RUnlock()
	return g.Store.CommitBatch(ctx, l, p, b)
}

// crashingBody reports that it is fetching the third of five folders, waits until a heartbeat
// has put that in the row, and panics on a goroutine of its own: nothing recovers that, and the
// process dies, as with the out-of-memory of a huge message or a parser bug.
func crashingBody(s *store.Store) worker.Body {
	return func(ctx context.Context, run *worker.Run) error {
		fmt.Println("claimed " + run.Task.ID)
		run.Report(task.Progress{Phase: "fetching Archive/2024", FoldersTotal: 5, FoldersDone: 2, MessagesTotal: 900, MessagesDone: 410})
		for {
			tk, err := s.Task(ctx, run.Task.ID)
			if err != nil {
				return err
			}
			if tk.Progress.Phase == "fetching Archive/2024" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		crashed := make(chan struct{})
		go func() {
			defer close(crashed)
			panic("the body crashes its process")
		}()
		<-crashed
		return nil
	}
}

type commitFunc func(ctx context.Context, l task.Lease, p task.Progress, b store.Batch) (int64, error)

// writingBody stores one message every 10 ms in a folder named after the worker's lease, each
// write fenced like a real sync's, until n messages are written or the task is stopped.
func writingBody(commit commitFunc, n int, say func(string)) worker.Body {
	return func(ctx context.Context, run *worker.Run) error {
		say("claimed " + run.Task.ID)
		folder := fmt.Sprintf("epoch-%d", run.Task.Epoch)
		p := task.Progress{Phase: "fetch", FoldersTotal: 1, MessagesTotal: n}
		for uid := uint32(1); p.MessagesDone < n; uid++ {
			select {
			case <-ctx.Done():
				say(fmt.Sprintf("stopped %s: %v", run.Task.ID, context.Cause(ctx)))
				return context.Cause(ctx)
			case <-time.After(10 * time.Millisecond):
			}
			p.MessagesDone++
			p.New++
			began := time.Now()
			_, err := commit(ctx, run.Lease(), p, store.Batch{
				Folder:   store.Folder{AccountID: run.Task.AccountID, Name: folder, UIDValidity: 1, UIDNext: uid + 1},
				Messages: []store.Message{{UID: uid, Raw: []byte("Subject: x\r\n\r\nbody\r\n")}},
			})
			if err != nil {
				// Refused (ErrLeaseLost) or cut short by the worker cancelling the task.
				say(fmt.Sprintf("stopped %s: %v", run.Task.ID, err))
				return err
			}
			run.Beat(began)
			run.Report(p)
		}
		return nil
	}
}

type env struct {
	dsn   string
	store *store.Store
	tasks *task.Manager
}

func newEnv(t *testing.T, dialect string) env {
	t.Helper()
	return newEnvWith(t, dialect, fast)
}

// newEnvWith is newEnv under the lifecycle c.
func newEnvWith(t *testing.T, dialect string, c task.Config) env {
	t.Helper()
	dsn := storetest.DSN(t, dialect)
	s := storetest.OpenDSN(t, dsn, true)
	m, err := task.NewManager(s, c)
	if err != nil {
		t.Fatal(err)
	}
	return env{dsn: dsn, store: s, tasks: m}
}

// helper is a worker subprocess and the lines it printed.
type helper struct {
	cmd   *exec.Cmd
	lines chan string
}

func startHelper(t *testing.T, dsn string) *helper {
	t.Helper()
	return spawnHelper(t, dsn, false)
}

// startCrashingHelper starts a helper whose body crashes the process (its panic's stack, expected,
// is not shown).
func startCrashingHelper(t *testing.T, dsn string) *helper {
	t.Helper()
	return spawnHelper(t, dsn, true)
}

func spawnHelper(t *testing.T, dsn string, crash bool) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	if crash {
		cmd.Env = append(cmd.Env, crashEnv+"=1")
		cmd.Stderr = nil
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return h
}

// expect waits for a line starting with prefix.
func (h *helper) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before printing %q", prefix)
			}
			t.Logf("helper: %s", line)
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-deadline:
			t.Fatalf("helper did not print %q within %s", prefix, within)
		}
	}
}

func (e env) start(t *testing.T) task.Task {
	t.Helper()
	tk, _, err := e.tasks.Start(context.Background(), storetest.SeedAccount(t, e.store).ID, false)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (e env) waitProgress(t *testing.T, id string, atLeast int) task.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tk, err := e.tasks.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Progress.MessagesDone >= atLeast {
			return tk
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s never reached %d messages", id, atLeast)
	return task.Task{}
}

func (e env) countMessages(t *testing.T, accountID int64, folder string) int {
	t.Helper()
	var n int
	err := e.store.DB().QueryRow(`SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id
		WHERE f.account_id = $1 AND f.name = $2`, accountID, folder).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A worker killed with SIGKILL mid-task: the user's next Start gets a fresh task as soon as the
// timeout has passed, with no reaper and no operator.
func TestKilledWorkerIsReplacedWithinTimeout(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		tk := e.start(t)
		h := startHelper(t, e.dsn)
		h.expect(t, "claimed "+tk.ID, 10*time.Second)
		e.waitProgress(t, tk.ID, 5)
		_ = h.cmd.Process.Kill()
		killed := time.Now()

		for {
			next, created, err := e.tasks.Start(context.Background(), tk.AccountID, false)
			if err != nil {
				t.Fatal(err)
			}
			if created {
				if waited := time.Since(killed); waited > fast.HeartbeatTimeout+time.Second {
					t.Fatalf("a new task could start only after %s", waited)
				}
				if next.ID == tk.ID {
					t.Fatal("Start returned the dead task")
				}
				break
			}
			if time.Since(killed) > 5*fast.HeartbeatTimeout {
				t.Fatal("the dead task still blocks Start")
			}
			time.Sleep(50 * time.Millisecond)
		}
		dead, _ := e.tasks.Get(context.Background(), tk.ID)
		if dead.State != task.Failed || dead.Error == "" {
			t.Fatalf("the killed task is %s (%q), want failed with a reason", dead.State, dead.Error)
		}
	})
}

// A worker paused with SIGSTOP past the timeout is replaced; when it resumes, every write it
// tries is refused and it stops, and the replacement's work stands.
func TestPausedWorkerIsFencedAfterResume(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		tk := e.start(t)
		h := startHelper(t, e.dsn)
		h.expect(t, "claimed "+tk.ID, 10*time.Second)
		a := e.waitProgress(t, tk.ID, 5)
		if err := h.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		h.expect(t, "pausing", 5*time.Second)
		time.Sleep(fast.HeartbeatTimeout + 200*time.Millisecond)
		reaped, err := e.tasks.Reap(ctx)
		if err != nil || len(reaped) != 1 || reaped[0].State != task.Queued {
			t.Fatalf("reap: %+v, %v; want the paused task re-queued", reaped, err)
		}
		b, ok, err := e.tasks.Claim(ctx, "replacement")
		if err != nil || !ok || b.ID != tk.ID {
			t.Fatalf("replacement claim: %+v %v %v", b, ok, err)
		}
		zombieFolder := fmt.Sprintf("epoch-%d", a.Epoch)
		before := e.countMessages(t, tk.AccountID, zombieFolder)

		if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		h.expect(t, "stopped "+tk.ID, 5*time.Second)
		time.Sleep(300 * time.Millisecond)
		if after := e.countMessages(t, tk.AccountID, zombieFolder); after != before {
			t.Fatalf("the resumed zombie wrote %d messages after it was replaced", after-before)
		}
		now, err := e.tasks.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if now.Owner != "replacement" || now.Epoch != b.Epoch || now.State != task.Running {
			t.Fatalf("the zombie changed the replacement's row: %+v", now)
		}
		done, err := e.tasks.Finish(ctx, b.Lease(), task.Succeeded, task.Progress{MessagesTotal: 1, MessagesDone: 1}, "")
		if err != nil || done.State != task.Succeeded {
			t.Fatalf("the replacement could not finish: %+v %v", done, err)
		}
	})
}

// A worker whose process dies on every attempt: the task ends failed after max attempts.
func TestTaskThatKillsEveryWorkerFails(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		tk := e.start(t)
		for attempt := 1; attempt <= fast.MaxAttempts; attempt++ {
			h := startHelper(t, e.dsn)
			h.expect(t, "claimed "+tk.ID, 10*time.Second)
			_ = h.cmd.Process.Kill()
			_ = h.cmd.Wait()
			time.Sleep(fast.HeartbeatTimeout + 100*time.Millisecond)
			if _, err := e.tasks.Reap(ctx); err != nil {
				t.Fatal(err)
			}
		}
		final, err := e.tasks.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if final.State != task.Failed || final.Attempt != fast.MaxAttempts {
			t.Fatalf("after %d deaths the task is %s at attempt %d", fast.MaxAttempts, final.State, final.Attempt)
		}
	})
}

// A task whose worker process crashes on every attempt (a panic nothing recovers, in the same
// place each time) ends failed after max attempts with an error that says where its last
// heartbeat was: the phase with its folder, and how far it had got. The account's automatic
// syncs then back off.
func TestCrashLoopingTaskSaysWhereItDied(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		e := newEnv(t, d)
		tk := e.start(t)
		for attempt := 1; attempt <= fast.MaxAttempts; attempt++ {
			h := startCrashingHelper(t, e.dsn)
			h.expect(t, "claimed "+tk.ID, 10*time.Second)
			done := make(chan error, 1)
			go func() { done <- h.cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("attempt %d: the crashing worker exited cleanly", attempt)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("attempt %d: the worker did not crash", attempt)
			}
			time.Sleep(fast.HeartbeatTimeout + 100*time.Millisecond)
			if _, err := e.tasks.Reap(ctx); err != nil {
				t.Fatal(err)
			}
		}
		final, err := e.tasks.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if final.State != task.Failed || final.Deaths != fast.MaxAttempts || !task.Died(final) {
			t.Fatalf("after %d crashes the task is %s with %d deaths", fast.MaxAttempts, final.State, final.Deaths)
		}
		for _, want := range []string{"every attempt (3 of 3)", `phase "fetching Archive/2024"`, "2 of 5 folders done", "410 of 900 messages"} {
			if !strings.Contains(final.Error, want) {
				t.Errorf("the error %q does not say %q", final.Error, want)
			}
		}
		t.Logf("the crash-looping task's error: %s", final.Error)
		e.tasks.Now = func() time.Time { return final.FinishedAt.Add(time.Minute) }
		if until, err := e.tasks.HeldUntil(ctx, tk.AccountID); err != nil || !until.Equal(final.FinishedAt.Add(5*time.Minute)) {
			t.Fatalf("the account's automatic syncs are held until %v (%v), want 5 min after the failure", until, err)
		}
	})
}

// SIGTERM hands the running task back to the queue without spending an attempt.
func TestSIGTERMRequeuesWithoutBurningAttempt(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		tk := e.start(t)
		h := startHelper(t, e.dsn)
		h.expect(t, "claimed "+tk.ID, 10*time.Second)
		e.waitProgress(t, tk.ID, 3)
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		h.expect(t, "exited", 10*time.Second)
		got, err := e.tasks.Get(context.Background(), tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != task.Queued || got.Attempt != 0 || got.Progress.MessagesDone < 3 {
			t.Fatalf("after SIGTERM: %s attempt %d progress %+v; want queued, attempt 0, progress kept", got.State, got.Attempt, got.Progress)
		}
	})
}

// runWorker runs an in-process worker with body until the test ends.
func runWorker(t *testing.T, e env, body worker.Body) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := worker.New(e.tasks, body, worker.Config{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (e env) waitState(t *testing.T, id string, want task.State) task.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		tk, err := e.tasks.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.State == want {
			return tk
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("task %s never became %s", id, want)
	return task.Task{}
}

func TestBodyOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		body      worker.Body
		want      task.State
		wantError string
	}{
		{"success", func(ctx context.Context, r *worker.Run) error {
			r.Report(task.Progress{MessagesTotal: 2, MessagesDone: 2, New: 2})
			return nil
		}, task.Succeeded, ""},
		{"error", func(ctx context.Context, r *worker.Run) error {
			return errors.New("imap: login to 127.0.0.1:1 as bob: authentication failed")
		}, task.Failed, "authentication failed"},
		{"panic", func(ctx context.Context, r *worker.Run) error { panic("bad mail") }, task.Failed, "internal error: bad mail"},
	}
	storetest.ForEach(t, func(t *testing.T, d string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, d)
				runWorker(t, e, tc.body)
				tk := e.start(t)
				got := e.waitState(t, tk.ID, tc.want)
				if !strings.Contains(got.Error, tc.wantError) {
					t.Fatalf("error %q, want it to contain %q", got.Error, tc.wantError)
				}
			})
		}
	})
}

// Cancel of a running task stops its body within about one heartbeat interval.
func TestCancelStopsRunningTaskWithinOneHeartbeat(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		runWorker(t, e, writingBody(e.store.CommitBatch, 1<<30, func(string) {}))
		tk := e.start(t)
		e.waitProgress(t, tk.ID, 2)
		asked := time.Now()
		if _, err := e.tasks.Cancel(context.Background(), tk.ID); err != nil {
			t.Fatal(err)
		}
		got := e.waitState(t, tk.ID, task.Cancelled)
		if took := time.Since(asked); took > 2*fast.HeartbeatInterval+300*time.Millisecond {
			t.Fatalf("the cancel took %s to stop the task", took)
		}
		if got.Error == "" {
			t.Fatal("a cancelled task says nothing of why")
		}
	})
}

// A body that does not stop when told cannot hold a shutdown past the grace: its task goes back to
// the queue anyway, and anything it writes later is refused.
func TestShutdownGraceBoundsAStuckBody(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		release := make(chan struct{})
		defer close(release)
		claimed := make(chan task.Lease, 1)
		stuck := func(ctx context.Context, r *worker.Run) error {
			claimed <- r.Lease()
			<-release // deaf to ctx
			return nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := worker.New(e.tasks, stuck, worker.Config{PollInterval: 10 * time.Millisecond, ShutdownGrace: 200 * time.Millisecond})
		stopped := make(chan struct{})
		go func() { _ = w.Run(ctx); close(stopped) }()
		tk := e.start(t)
		lease := <-claimed
		began := time.Now()
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("a stuck body held the shutdown")
		}
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("shutdown took %s with a 200 ms grace", took)
		}
		got, err := e.tasks.Get(context.Background(), tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != task.Queued || got.Attempt != 0 {
			t.Fatalf("after the grace the task is %s at attempt %d, want queued at 0", got.State, got.Attempt)
		}
		if _, err := e.tasks.Heartbeat(context.Background(), lease, task.Progress{}); !errors.Is(err, task.ErrLeaseLost) {
			t.Fatalf("the stuck run can still write: %v", err)
		}
	})
}
