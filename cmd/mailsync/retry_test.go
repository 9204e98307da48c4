package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// syncProcess is `mailsync sync` run as a separate process, so that the test can SIGKILL it.
type syncProcess struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

func startSync(t *testing.T, args ...string) *syncProcess {
	t.Helper()
	p := &syncProcess{done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), mainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = <-p.done
		p.done <- nil
	})
	return p
}

// wait returns the exit error of the process, failing the test if it runs longer than within.
func (p *syncProcess) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done // the output is complete once Wait has returned
		t.Fatalf("mailsync sync did not end within %s; stderr:\n%s", within, p.stderr.String())
		return nil
	}
}

// mailbox is an account on a private Dovecot, with the corpus the server holds.
type mailbox struct {
	dsn    string
	common []string
	stats  mailgen.Stats
	store  *store.Store
}

// newMailbox makes a database of the dialect holding one user and the account "mail" on a Dovecot
// with n generated messages; flags are the lifecycle flags every command gets.
func newMailbox(t *testing.T, dialect string, n int, flags ...string) *mailbox {
	t.Helper()
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "dave", "dave-imap-pw")
	stats := dovecot.WriteMailgen(t, u, mailgen.Options{Seed: 8, Messages: n})
	dsn := storetest.DSN(t, dialect)
	m := &mailbox{dsn: dsn, common: append([]string{"--db", dsn, "--data-dir", t.TempDir()}, flags...), stats: stats}
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"a-long-password\n", []string{"user", "add", "dave@example.test", "--password-stdin"}},
		{u.Password + "\n", []string{"account", "add", "--user", "dave@example.test", "--name", "mail",
			"--imap-url", "imap://" + u.Login + "@" + dovecot.Addr(), "--tls", "none", "--password-stdin"}},
	} {
		if code, _, stderr := mailsyncIn(t, c.stdin, append(append([]string{}, m.common...), c.args...)...); code != 0 {
			t.Fatalf("mailsync %s: %s", strings.Join(c.args, " "), stderr)
		}
	}
	m.store = storetest.OpenDSN(t, dsn, false)
	return m
}

func (m *mailbox) args(args ...string) []string {
	return append(append([]string{}, m.common...), args...)
}

func (m *mailbox) accountID(t *testing.T) int64 {
	t.Helper()
	var id int64
	if err := m.store.DB().QueryRow(`SELECT id FROM accounts WHERE name = 'mail'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// wantStoreEqualsServer checks that every message of the server is stored once, folder by folder.
func (m *mailbox) wantStoreEqualsServer(t *testing.T) {
	t.Helper()
	rows, err := m.store.DB().Query(`SELECT f.messages, count(m.id), count(DISTINCT m.message_id)
		FROM folders f LEFT JOIN messages m ON m.folder_id = f.id GROUP BY f.id, f.messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var stored, server []int
	total := 0
	for rows.Next() {
		var recorded, n, distinct int
		if err := rows.Scan(&recorded, &n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n != distinct {
			t.Errorf("a folder holds %d messages of which %d are distinct", n, distinct)
		}
		stored, total = append(stored, n), total+n
	}
	for _, n := range m.stats.Folders {
		server = append(server, n)
	}
	slices.Sort(stored)
	slices.Sort(server)
	if total != m.stats.Messages || !slices.Equal(stored, server) {
		t.Fatalf("the store holds %d messages %v by folder, the server %d %v", total, stored, m.stats.Messages, server)
	}
}

// waitMidSync waits until the account's task runs and has stored some messages.
func (m *mailbox) waitMidSync(t *testing.T, p *syncProcess) task.Task {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		tk, err := m.store.LatestTask(context.Background(), m.accountID(t))
		if err == nil && tk.State == task.Running && tk.Progress.MessagesDone > 0 {
			return tk
		}
		if err == nil && !tk.State.Active() {
			t.Fatalf("the sync ended %s before it could be killed: make the corpus bigger", tk.State)
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("mailsync sync exited (%v) before it was killed:\n%s", err, p.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatal("the sync never got going")
	return task.Task{}
}

// killedSyncIsRetried SIGKILLs `mailsync sync` mid-sync and runs it again at once: the second
// command must settle the dead task itself (no server, no reaper runs), finish within the
// heartbeat timeout plus its own sync, and leave the store equal to the server with exactly one
// task succeeded.
func killedSyncIsRetried(t *testing.T, dialect string, timeout time.Duration, flags ...string) time.Duration {
	const messages = 3000
	m := newMailbox(t, dialect, messages, flags...)
	first := startSync(t, m.args("sync", "mail")...)
	dead := m.waitMidSync(t, first)
	_ = first.cmd.Process.Kill()
	_ = first.wait(t, 10*time.Second)

	began := time.Now()
	second := startSync(t, m.args("sync", "mail", "--json")...)
	if err := second.wait(t, timeout+5*time.Minute); err != nil { // a bound for a hang, not a measure
		t.Fatalf("the retried sync failed (%v):\n%s", err, second.stderr.String())
	}
	took := time.Since(began)
	var final task.View
	if err := json.Unmarshal(second.stdout.Bytes(), &final); err != nil {
		t.Fatalf("the retried sync printed %q: %v", second.stdout.String(), err)
	}
	if final.State != task.Succeeded {
		t.Fatalf("the retried sync ended with task %s %s, want succeeded", final.ID, final.State)
	}
	if took < timeout/2 {
		t.Errorf("the retry took %s: a dead task cannot be known dead before its timeout %s", took, timeout)
	}
	m.wantStoreEqualsServer(t)
	var succeeded, all int
	if err := m.store.DB().QueryRow(`SELECT count(CASE WHEN state = 'succeeded' THEN 1 END), count(*) FROM sync_tasks`).Scan(&succeeded, &all); err != nil {
		t.Fatal(err)
	}
	if succeeded != 1 {
		t.Fatalf("%d tasks, %d succeeded: want exactly one succeeded", all, succeeded)
	}
	attempts, err := m.store.TaskAttempts(context.Background(), dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.ID != dead.ID {
		// The second command started after the killed task was already dead (a slow start on a
		// busy machine, or a short timeout): its Start replaced the task, as a Sync now would.
		if all != 2 || len(attempts) != 1 || attempts[0].Outcome != task.Failed || !strings.HasPrefix(attempts[0].Error, "abandoned") {
			t.Fatalf("%d tasks; the killed one's attempts %+v: want it abandoned by the Start that replaced it", all, attempts)
		}
		t.Logf("%s: the second command started after the timeout; its Start replaced the dead task; finished in %s", dialect, took.Round(time.Millisecond))
		return took
	}
	if all != 1 || !strings.Contains(second.stderr.String(), "running it again") {
		t.Errorf("%d tasks; the retried sync said:\n%s\nwant the one task, taken over by the command", all, second.stderr.String())
	}
	if len(attempts) != 2 || attempts[0].Outcome != task.Queued || !strings.Contains(attempts[0].Error, "heartbeats") ||
		attempts[1].Outcome != task.Succeeded {
		t.Fatalf("attempt log %+v: want the killed run re-queued for silence, then the success", attempts)
	}
	// The retry's run began as soon as the killed one was dead, by the database clock: the rest of
	// the command's time is its own sync, however busy the machine.
	silent := attempts[1].StartedAt.Sub(attempts[0].LastHeartbeatAt)
	if silent < timeout || silent > timeout+3*time.Second {
		t.Errorf("the retry's run began %s after the killed run's last heartbeat, want the timeout %s and at most 3 s more", silent, timeout)
	}
	t.Logf("%s: the retried sync finished in %s; its run began %s after the killed run's last heartbeat (heartbeat timeout %s)",
		dialect, took.Round(time.Millisecond), silent.Round(time.Millisecond), timeout)
	return took
}

func TestKilledSyncCommandIsRetriedAtOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		killedSyncIsRetried(t, d, 8*time.Second, "--heartbeat-interval=1s", "--heartbeat-timeout=8s", "--self-fence=6s")
	})
}

// The same with the default timings, as a user runs it: the retry waits out the 60 s heartbeat
// timeout, so this test takes a little over a minute (both engines at once).
func TestKilledSyncCommandIsRetriedAtOnceWithDefaultTimings(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		killedSyncIsRetried(t, d, task.DefaultConfig().HeartbeatTimeout)
	})
}

// `mailsync sync A` runs A's task only: another account's queued sync (queued by the API of a
// server that is down) is left queued, untouched, for the servers.
func TestSyncCommandRunsOnlyItsAccount(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		m := newMailbox(t, d, 30)
		other := storetest.SeedAccount(t, m.store)
		tasks, err := task.NewManager(m.store, task.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		queued, _, err := tasks.Start(context.Background(), other.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr := mailsync(t, m.args("sync", "mail")...)
		if code != 0 {
			t.Fatalf("sync: %s", stderr)
		}
		m.wantStoreEqualsServer(t)
		got, err := tasks.Get(context.Background(), queued.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != task.Queued || got.Attempt != 0 || got.Owner != "" {
			t.Fatalf("the other account's task is %s, attempt %d, owner %q: want it still queued, never claimed", got.State, got.Attempt, got.Owner)
		}
	})
}
