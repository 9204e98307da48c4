package httpapi_test

import (
	"fmt"
	"testing"
	"time"

	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
)

// Sync now on an account whose task row another database session holds (a frozen instance, an
// operator's open transaction) answers within a couple of seconds: the live task when there is
// one, else a 503 with Retry-After; never a second active task. Cancel answers a 503 as promptly. PostgreSQL only: SQLite has no
// row locks.
func TestSyncNowOnALockedTaskRowAnswersPromptly(t *testing.T) {
	// Live for longer than Start's one-second wait for the lock.
	lifecycle := testTaskConfig()
	lifecycle.HeartbeatInterval, lifecycle.HeartbeatTimeout, lifecycle.SelfFence = 500*time.Millisecond, 2*time.Second, 1500*time.Millisecond
	e := newEnv(t, "postgres", func(c *instance.Config) { c.Lifecycle = lifecycle })
	a := e.addAccount(e.alice, "work")
	first := e.startSync(e.alice, a.ID)
	if _, _, err := e.tasks.Claim(t.Context(), "w"); err != nil {
		t.Fatal(err)
	}
	release := storetest.HoldRowLock(t, e.store, first.Task.ID)
	post := func() (response, time.Duration) {
		began := time.Now()
		r := e.request(e.alice, "POST", fmt.Sprintf("/api/accounts/%d/sync", a.ID), map[string]any{})
		return r, time.Since(began)
	}
	const prompt = 3 * time.Second

	r, took := post()
	var joined startResult
	r.want(t, 202).json(t, &joined)
	if took > prompt || !joined.Reused || joined.Task.ID != first.Task.ID || !joined.Task.Live {
		t.Fatalf("Sync now on a locked live task: %+v after %s; want the live task, reused, within %s", joined, took, prompt)
	}

	time.Sleep(lifecycle.HeartbeatTimeout) // dead, and still locked
	r, took = post()
	r.wantProblem(t, 503)
	if took > prompt || r.Header.Get("Retry-After") == "" {
		t.Fatalf("Sync now on a locked dead task: 503 after %s with Retry-After %q; want it within %s with a Retry-After", took, r.Header.Get("Retry-After"), prompt)
	}
	if n := storetest.CountTasks(t, e.store, a.ID); n != 1 {
		t.Fatalf("%d tasks after Sync now on a locked row, want 1", n)
	}

	// Cancel meets the same lock: a prompt 503, nothing changed.
	began := time.Now()
	r = e.request(e.alice, "POST", "/api/sync/tasks/"+first.Task.ID+"/cancel", nil)
	r.wantProblem(t, 503)
	if took := time.Since(began); took > prompt || r.Header.Get("Retry-After") == "" {
		t.Fatalf("Cancel of a locked task: 503 after %s with Retry-After %q", took, r.Header.Get("Retry-After"))
	}

	release()
	fresh := e.startSync(e.alice, a.ID)
	if fresh.Reused || fresh.Task.ID == first.Task.ID {
		t.Fatalf("Sync now once the lock went: %+v, want a new task replacing the dead one", fresh)
	}
}
