package syncer_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/changes"
	"mailsync/internal/changes/changestest"
	"mailsync/internal/imapconn"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// The test binary doubles as a sync process: run with helperDSN set, it is a worker with the
// syncer on that database, printing "fetched N" for every body it downloads, until the account's
// latest task ends (then it prints "done STATE" and exits) or it is killed.
const (
	helperDSN     = "MAILSYNC_SYNCER_HELPER_DSN"
	helperKey     = "MAILSYNC_SYNCER_HELPER_KEY"
	helperAccount = "MAILSYNC_SYNCER_HELPER_ACCOUNT"
	helperBatch   = "MAILSYNC_SYNCER_HELPER_BATCH"
	helperMaxMsg  = "MAILSYNC_SYNCER_HELPER_MAX_MESSAGE_SIZE"
	// helperKillApplied=N: the helper kills itself (SIGKILL) right after its Nth action was
	// applied on the server and before that was recorded.
	helperKillApplied = "MAILSYNC_SYNCER_HELPER_KILL_APPLIED"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(helperDSN); dsn != "" {
		os.Exit(helperSync(dsn))
	}
	os.Exit(m.Run())
}

// helperLifecycle is the helper process's: heartbeats as often as fast's, but a timeout and a
// self-fence that CPU starvation cannot reach.
var helperLifecycle = task.Config{
	HeartbeatInterval: 100 * time.Millisecond,
	HeartbeatTimeout:  30 * time.Second,
	SelfFence:         20 * time.Second,
	ReapInterval:      time.Second,
	QueuedTimeout:     time.Minute,
	MaxAttempts:       1,
	MaxRunTime:        5 * time.Minute,
}

func helperSync(dsn string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	key, err := secret.LoadKey(os.Getenv(helperKey), "")
	if err != nil {
		return fail(err)
	}
	box, err := secret.New(key)
	if err != nil {
		return fail(err)
	}
	accountID, _ := strconv.ParseInt(os.Getenv(helperAccount), 10, 64)
	batch, _ := strconv.Atoi(os.Getenv(helperBatch))
	maxMsg, _ := strconv.ParseInt(os.Getenv(helperMaxMsg), 10, 64)
	// The helper measures memory and resumption, not liveness: its lifecycle tolerates the stalls
	// of a loaded machine under -race (a 700 ms self-fence did not: the task fenced itself, and
	// with nobody to reap it the helper waited for ever). Like every instance it runs a reaper, so
	// a run that does die ends in a state the test reads instead of hanging.
	tasks, err := task.NewManager(st, helperLifecycle)
	if err != nil {
		return fail(err)
	}
	var fetched atomic.Int64
	killAt, _ := strconv.Atoi(os.Getenv(helperKillApplied))
	applied := 0
	s := syncer.New(st, box, syncer.Options{BatchMessages: batch, Limits: imapconn.Limits{MaxMessageSize: maxMsg}, Fetched: func(string, uint32) {
		// Printed before the body goes further: a SIGKILL can never hide a download.
		fmt.Printf("fetched %d\n", fetched.Add(1))
	}, Applied: func(a action.Action) {
		if applied++; applied == killAt {
			fmt.Printf("killed after applying action %d\n", a.ID)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}})
	w := worker.New(tasks, s.Run, worker.Config{Concurrency: 1, PollInterval: 10 * time.Millisecond})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(wctx) }()
	reaper := &worker.Reaper{Tasks: tasks, Interval: helperLifecycle.ReapInterval}
	go func() { _ = reaper.Run(wctx) }()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(20 * time.Millisecond):
		}
		tk, err := tasks.Latest(ctx, accountID)
		if err == nil && tk.Epoch > 0 && !tk.State.Active() {
			// Our own high-water mark: the rusage of a child started by os/exec also counts the
			// parent's memory at the moment of the fork.
			fmt.Printf("peak %d\n", peakRSS())
			fmt.Printf("done %s %s\n", tk.State, tk.Error)
			return 0
		}
	}
}

// peakRSS returns this process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// syncProcess is a helper process and what it printed.
type syncProcess struct {
	cmd     *exec.Cmd
	fetched atomic.Int64
	lines   chan string
	exited  chan struct{}
}

func startSyncProcess(t *testing.T, dsn string, key []byte, accountID int64, batch int, env ...string) *syncProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperDSN+"="+dsn, helperKey+"="+base64.StdEncoding.EncodeToString(key),
		helperAccount+"="+strconv.FormatInt(accountID, 10), helperBatch+"="+strconv.Itoa(batch))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &syncProcess{cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "fetched "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				p.fetched.Store(v)
				continue
			}
			p.lines <- line
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		_ = cmd.Wait()
	})
	return p
}

// waitFetched waits until the process has downloaded n bodies.
func (p *syncProcess) waitFetched(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for p.fetched.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the sync process downloaded only %d bodies in 2 minutes", p.fetched.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// finish waits for the process to end its task and exit, and returns its last line and peak RSS.
func (p *syncProcess) finish(t *testing.T) (string, int64) {
	t.Helper()
	var (
		last string
		rss  int64 = -1
	)
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				if err := p.cmd.Wait(); err != nil {
					t.Fatalf("sync process: %v", err)
				}
				if rss < 0 {
					t.Fatal("the sync process did not report its peak RSS")
				}
				return last, rss
			}
			if v, ok := strings.CutPrefix(line, "peak "); ok {
				rss, _ = strconv.ParseInt(v, 10, 64)
				continue
			}
			last = line
		case <-timeout:
			t.Fatal("the sync process did not finish within 3 minutes")
		}
	}
}

// TestKilledSyncResumes SIGKILLs a sync process halfway through a 5,000-message first sync and
// runs another: the store ends equal to the server, and no more than one batch of bodies was
// downloaded twice.
func TestKilledSyncResumes(t *testing.T) {
	t.Parallel()
	const total, batch = 5000, 200
	srv := dovecotWithCorpus(t, total)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "mailsync.db")
	e, key := newAccount(t, dsn, srv)
	ctx := context.Background()
	first, _, err := e.tasks.Start(ctx, e.acct.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	p1 := startSyncProcess(t, dsn, key, e.acct.ID, batch)
	p1.waitFetched(t, total/2)
	if err := p1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p1.exited
	_ = p1.cmd.Wait()
	fetched1 := p1.fetched.Load()
	committed := e.storedCount(t)
	t.Logf("killed after %d downloads, %d committed", fetched1, committed)
	if committed == 0 || committed >= total {
		t.Fatalf("%d messages committed at the kill; want some but not all", committed)
	}

	// The dead task blocks the account until its heartbeat is older than the timeout; then
	// Start replaces it.
	var second task.Task
	for deadline := time.Now().Add(30 * time.Second); ; {
		second, _, err = e.tasks.Start(ctx, e.acct.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if second.ID != first.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed task was never replaced")
		}
		time.Sleep(100 * time.Millisecond)
	}
	p2 := startSyncProcess(t, dsn, key, e.acct.ID, batch)
	last, rss := p2.finish(t)
	if !strings.HasPrefix(last, "done succeeded") {
		t.Fatalf("second sync: %s", last)
	}
	fetched2 := p2.fetched.Load()
	t.Logf("resumed sync downloaded %d bodies, peak RSS %d MiB", fetched2, rss>>20)
	e.assertMirrors(t)
	if fetched2 != int64(total-committed) {
		t.Errorf("resumed sync downloaded %d bodies; %d were missing", fetched2, total-committed)
	}
	if twice := fetched1 + fetched2 - total; twice > batch {
		t.Errorf("%d bodies downloaded twice; at most one batch (%d) may be", twice, batch)
	}
	// The killed run's committed batches are in the change log once each, the batch it lost
	// is not, the Start that replaced it says it failed, and the resumed run adds exactly the rest.
	log := changestest.Check(t, e.store, e.acct.ID)
	created := 0
	for _, c := range log {
		if c.Kind == changes.MessageCreated {
			created++
		}
	}
	if got := syncEnds(log); created != total || !slices.Equal(got, []string{"sync.failed failed", "sync.succeeded succeeded"}) {
		t.Errorf("change log: %d message.created (want %d), task ends %q", created, total, got)
	}
	if limit := int64(100<<20) * memoryFactor; rss > limit {
		t.Errorf("peak RSS of the resumed sync %d MiB, want < %d MiB", rss>>20, limit>>20)
	}
}

// TestSyncMemoryIsBounded measures the peak RSS of a sync process on a first sync of 5,000
// messages (bench/README.md has 20,000 and 100,000).
func TestSyncMemoryIsBounded(t *testing.T) {
	t.Parallel()
	const total = 5000
	srv := dovecotWithCorpus(t, total)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "mailsync.db")
	e, key := newAccount(t, dsn, srv)
	if _, _, err := e.tasks.Start(context.Background(), e.acct.ID, false); err != nil {
		t.Fatal(err)
	}
	p := startSyncProcess(t, dsn, key, e.acct.ID, 0)
	last, rss := p.finish(t)
	if !strings.HasPrefix(last, "done succeeded") {
		t.Fatalf("sync: %s", last)
	}
	t.Logf("peak RSS of a %d-message first sync: %d MiB", total, rss>>20)
	if limit := int64(100<<20) * memoryFactor; rss > limit {
		t.Errorf("peak RSS %d MiB, want < %d MiB", rss>>20, limit>>20)
	}
	if n := e.storedCount(t); n != total {
		t.Errorf("%d messages stored, want %d", n, total)
	}
}
