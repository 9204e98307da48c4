package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// logBuffer collects the output of server processes while the test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	os.Stderr.Write(p)
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startResult is the answer of Sync now.
type startResult struct {
	Task   task.View `json:"task"`
	Reused bool      `json:"reused"`
}

// startLoggedServer is startServer with the process's output also kept in logs.
func startLoggedServer(t *testing.T, logs *logBuffer, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// accountID looks an account up by name.
func accountID(t *testing.T, dsn, name string) int64 {
	t.Helper()
	var id int64
	if err := storetest.OpenDSN(t, dsn, false).DB().QueryRow(`SELECT id FROM accounts WHERE name = $1`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// insertDeadRunning writes a running task for the account whose worker never heartbeats again
// (as a crashed instance leaves it) with its one attempt spent, so the reaper fails it.
func insertDeadRunning(t *testing.T, s *store.Store, accountID int64) string {
	t.Helper()
	id := uuid.NewString()
	const now = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`
	if _, err := s.DB().Exec(`INSERT INTO sync_tasks (id, account_id, state, owner, epoch, attempt, max_attempts,
		created_at, started_at, heartbeat_at, phase) VALUES ($1, $2, 'running', 'crashed', 1, 1, 1, `+now+`, `+now+`, `+now+`, 'fetch')`,
		id, accountID); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestFrozenLockDelaysNothingElse runs three real `mailsync serve` processes on one PostgreSQL
// while another session (standing for a frozen instance) holds the row of a running sync's task
// for longer than the self-fence and the heartbeat timeout:
//   - dead tasks of other accounts are reaped within the timeout plus the reap interval, though
//     the locked row is itself dead (reapers skip it instead of failing on it);
//   - Sync now on the locked account answers at once: the live task while it is live, then a 503
//     with Retry-After once it is dead; Sync now on another account starts a sync at once;
//   - the healthy sync of another account succeeds in its first attempt;
//   - the locked sync's worker retries its heartbeats, then fences itself on time; once the lock
//     goes the task is re-queued and finishes in its second attempt, the store exact.
func TestFrozenLockDelaysNothingElse(t *testing.T) {
	const (
		messages = 2000
		// Generous for a loaded machine, where one batch of a sync can take two seconds (a batch
		// must commit within the self-fence), and the database dates a sync's beat from the start
		// of its batch, a second or more before the worker counts it.
		selfFence    = 5 * time.Second
		timeout      = 7 * time.Second
		reapInterval = 500 * time.Millisecond
		hold         = 11 * time.Second
		prompt       = 3 * time.Second
		slack        = 1500 * time.Millisecond // a loaded machine's scheduling
	)
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "dana", "dana-imap-pw")
	dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 8, Messages: messages})
	small := dovecot.AddUser(t, "erin", "erin-imap-pw")
	dovecot.WriteMailgen(t, small, mailgen.Options{Seed: 9, Messages: 300})

	dsn := storetest.DSN(t, "postgres")
	common := []string{"--db", dsn, "--data-dir", t.TempDir(), "--heartbeat-interval=500ms",
		"--heartbeat-timeout=" + timeout.String(), "--self-fence=" + selfFence.String(), "--reap-interval=" + reapInterval.String()}
	must := func(stdin string, args ...string) string {
		t.Helper()
		code, out, stderr := mailsyncIn(t, stdin, append(append([]string{}, common...), args...)...)
		if code != 0 {
			t.Fatalf("mailsync %s: %s", strings.Join(args, " "), stderr)
		}
		return out
	}
	must("a-long-password\n", "user", "add", "dana@example.test", "--password-stdin")
	for name, imap := range map[string]imaptest.User{"locked": u, "healthy": small} {
		must(imap.Password+"\n", "account", "add", "--user", "dana@example.test", "--name", name,
			"--imap-url", "imap://"+imap.Login+"@"+dovecot.Addr(), "--tls", "none", "--password-stdin")
	}
	lockedAcct, healthyAcct := accountID(t, dsn, "locked"), accountID(t, dsn, "healthy")
	token := strings.TrimSpace(must("", "token", "create", "dana@example.test"))
	s := storetest.OpenDSN(t, dsn, false)

	var logs logBuffer
	apis := make([]apiClient, 3)
	for i := range apis {
		addr := freeAddr(t)
		apis[i] = apiClient{base: "http://" + addr, token: token}
		startLoggedServer(t, &logs, append(append([]string{}, common...), "serve", "--addr", addr, "--workers", "2")...)
	}
	for _, api := range apis {
		api.waitReady(t)
	}
	syncNow := func(api apiClient, acct int64) (int, startResult, time.Duration) {
		var r startResult
		began := time.Now()
		code := api.do(t, http.MethodPost, fmt.Sprintf("/api/accounts/%d/sync", acct), &r)
		return code, r, time.Since(began)
	}

	code, started, _ := syncNow(apis[0], lockedAcct)
	if code != http.StatusAccepted {
		t.Fatalf("Sync now: %d", code)
	}
	locked := started.Task.ID
	for {
		var v task.View
		apis[0].do(t, http.MethodGet, "/api/sync/tasks/"+locked, &v)
		if v.State == task.Succeeded {
			t.Fatal("the sync finished before its row could be locked: make the corpus bigger")
		}
		if v.State == task.Running && v.Progress.MessagesDone > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	release := storetest.HoldRowLock(t, s, locked)
	lockedAt := time.Now()

	// Sync now on the locked, live task: joined at once, from any instance.
	code, joined, took := syncNow(apis[1], lockedAcct)
	if code != http.StatusAccepted || !joined.Reused || joined.Task.ID != locked || !joined.Task.Live || took > prompt {
		t.Fatalf("Sync now on the locked live task: %d %+v after %s; want it joined within %s", code, joined, took, prompt)
	}
	t.Logf("Sync now on the locked live task answered in %s", took)
	// Another account: a new sync at once, which must run undisturbed.
	code, healthy, took := syncNow(apis[2], healthyAcct)
	if code != http.StatusAccepted || healthy.Reused || took > prompt {
		t.Fatalf("Sync now on another account: %d %+v after %s", code, healthy, took)
	}
	// Two crashed syncs of other accounts, dead after the timeout.
	dead := map[string]time.Time{}
	for range 2 {
		dead[insertDeadRunning(t, s, storetest.SeedAccount(t, s).ID)] = time.Now()
	}

	var busyChecked bool
	for time.Since(lockedAt) < hold {
		for id, since := range dead {
			tk, err := s.Task(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if tk.State == task.Running {
				if waited := time.Since(since); waited > timeout+reapInterval+slack {
					t.Fatalf("a dead task of another account is still running %s after it was last heard of (locked row held %s)", waited, time.Since(lockedAt))
				}
				continue
			}
			if tk.State != task.Failed {
				t.Fatalf("the reaped dead task is %s, want failed", tk.State)
			}
			t.Logf("dead task %s reaped %s after its last heartbeat", id, time.Since(since).Round(10*time.Millisecond))
			delete(dead, id)
		}
		if !busyChecked && time.Since(lockedAt) > timeout+slack {
			// The locked task is dead now: it can be neither joined nor replaced while locked.
			var problem struct{ Detail string }
			began := time.Now()
			code := apis[0].do(t, http.MethodPost, fmt.Sprintf("/api/accounts/%d/sync", lockedAcct), &problem)
			if took := time.Since(began); code != http.StatusServiceUnavailable || took > prompt {
				t.Fatalf("Sync now on the locked dead task: %d %q after %s; want a 503 within %s", code, problem.Detail, took, prompt)
			}
			t.Logf("Sync now on the locked dead task answered 503 in %s", time.Since(began))
			busyChecked = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dead) > 0 || !busyChecked {
		t.Fatalf("while the row was locked: %d dead tasks not reaped, busy Sync now checked: %v", len(dead), busyChecked)
	}
	release()

	// attemptOf waits for the task to succeed and returns its attempt.
	attemptOf := func(id string) int {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			tk, err := s.Task(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tk.State == task.Succeeded:
				return tk.Attempt
			case !tk.State.Active():
				t.Fatalf("task %s ended %s: %s", id, tk.State, tk.Error)
			case time.Now().After(deadline):
				t.Fatalf("task %s did not finish: %+v", id, tk)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if n := attemptOf(healthy.Task.ID); n != 1 {
		t.Fatalf("the healthy sync of another account needed %d attempts, want 1", n)
	}
	if n := attemptOf(locked); n != 2 {
		t.Fatalf("the locked sync succeeded at attempt %d, want 2 (fenced once, then resumed)", n)
	}
	if n := storetest.CountTasks(t, s, lockedAcct); n != 1 {
		t.Fatalf("the locked account has %d tasks, want 1", n)
	}
	var stored int
	if err := s.DB().QueryRow(`SELECT count(*) FROM messages WHERE account_id = $1`, lockedAcct).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != messages {
		t.Fatalf("the locked account's store holds %d messages, the server %d", stored, messages)
	}
	for _, want := range []string{"another database session holds; retrying", "no heartbeat succeeded within the self-fence",
		"reaped a dead task"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no server logged %q", want)
		}
	}
}
