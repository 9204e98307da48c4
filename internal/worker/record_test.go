package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// runLoggedWorker runs an in-process worker with body and config c, logging into the returned
// buffer, until the test ends.
func runLoggedWorker(t *testing.T, e env, body worker.Body, c worker.Config) *instancetest.LogBuffer {
	t.Helper()
	logs := &instancetest.LogBuffer{}
	c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	c.PollInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	w := worker.New(e.tasks, body, c)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return logs
}

// A task whose failure cannot be written (the database lost its task table for a moment, as in
// an outage) is logged as not recorded, never as "task failed": the log and the database agree.
func TestFailureThatCannotBeRecordedIsLoggedAsSuch(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		outage := make(chan struct{})
		logs := runLoggedWorker(t, e, func(ctx context.Context, r *worker.Run) error {
			if _, err := e.store.DB().ExecContext(ctx, `ALTER TABLE sync_tasks RENAME TO sync_tasks_away`); err != nil {
				return err
			}
			close(outage)
			return errors.New("imap: connection reset by peer")
		}, worker.Config{})
		tk := e.start(t)
		<-outage
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "could not record") {
			if time.Now().After(deadline) {
				t.Fatalf("no word of the unrecorded failure in the log:\n%s", logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := e.store.DB().Exec(`ALTER TABLE sync_tasks_away RENAME TO sync_tasks`); err != nil {
			t.Fatal(err)
		}
		out := logs.String()
		if strings.Contains(out, `msg="task failed"`) {
			t.Errorf("the log says the task failed although the database never heard of it:\n%s", out)
		}
		for _, want := range []string{"could not record that the task failed", "connection reset by peer", "sync_tasks"} {
			if !strings.Contains(out, want) {
				t.Errorf("the log lacks %q:\n%s", want, out)
			}
		}
		if got := e.waitState(t, tk.ID, task.Running); got.Error != "" {
			t.Errorf("the database shows %s with error %q, want it still running, untouched", got.State, got.Error)
		}
	})
}

// A recorded failure is still logged as "task failed", once.
func TestRecordedFailureIsLogged(t *testing.T) {
	e := newEnv(t, "sqlite")
	logs := runLoggedWorker(t, e, func(ctx context.Context, r *worker.Run) error {
		return errors.New("imap: authentication failed")
	}, worker.Config{})
	tk := e.start(t)
	e.waitState(t, tk.ID, task.Failed)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), `msg="task failed"`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("want one \"task failed\" line:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "could not record") {
		t.Fatalf("a recorded failure is logged as unrecorded:\n%s", logs)
	}
}

// A worker configured for one account runs only that account's tasks: another account's queued
// task, older than its own, stays queued for the servers.
func TestAccountWorkerLeavesOtherAccountsQueued(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		e := newEnv(t, d)
		theirs := e.start(t)
		ours := e.start(t)
		var ran sync.Map
		runLoggedWorker(t, e, func(ctx context.Context, r *worker.Run) error {
			ran.Store(r.Task.ID, true)
			return nil
		}, worker.Config{Account: ours.AccountID})
		e.waitState(t, ours.ID, task.Succeeded)
		time.Sleep(100 * time.Millisecond) // ten polls more
		if got := e.waitState(t, theirs.ID, task.Queued); got.Attempt != 0 {
			t.Fatalf("the other account's task was claimed: %+v", got)
		}
		if _, ok := ran.Load(theirs.ID); ok {
			t.Fatal("the account's worker ran another account's task")
		}
	})
}
