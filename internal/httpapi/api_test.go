package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

func TestSyncStormGetsOneTask(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		const n = 1000
		var (
			wg      sync.WaitGroup
			results = make([]startResult, n)
			codes   = make([]int, n)
			bodies  = make([]string, n)
		)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxConnsPerHost: 200}}
		defer client.CloseIdleConnections()
		for i := range n {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/accounts/%d/sync", e.ts.URL, a.ID), strings.NewReader(`{"force_full":false}`))
				req.Header.Set("Authorization", "Bearer "+e.alice.Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					bodies[i] = err.Error()
					return
				}
				defer resp.Body.Close()
				codes[i] = resp.StatusCode
				r := response{Response: resp}
				r.body, _ = readAll(resp)
				bodies[i] = string(r.body)
				if resp.StatusCode == 202 {
					r.json(t, &results[i])
				}
			})
		}
		wg.Wait()
		created := 0
		for i := range n {
			if codes[i] != 202 {
				t.Fatalf("request %d: %d %s", i, codes[i], bodies[i])
			}
			if results[i].Task.ID != results[0].Task.ID {
				t.Fatalf("request %d got task %s, request 0 got %s", i, results[i].Task.ID, results[0].Task.ID)
			}
			if !results[i].Reused {
				created++
			}
		}
		if created != 1 {
			t.Fatalf("%d answers said the task was new, want exactly 1", created)
		}
		var rows int
		if err := e.store.DB().QueryRow(`SELECT count(*) FROM sync_tasks WHERE account_id = $1`, a.ID).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("%d task rows, want 1", rows)
		}

		// Once the task has ended, the next click makes a new one.
		ctx := context.Background()
		tk, ok, err := e.tasks.Claim(ctx, "worker")
		if err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		if _, err := e.tasks.Finish(ctx, tk.Lease(), task.Succeeded, task.Progress{}, ""); err != nil {
			t.Fatal(err)
		}
		next := e.startSync(e.alice, a.ID)
		if next.Reused || next.Task.ID == results[0].Task.ID || next.Task.State != "queued" {
			t.Fatalf("after the task ended: %+v, want a new queued task", next)
		}
	})
}

// TestKilledWorkerIsReplacedWithoutCleanup: a worker claims, heartbeats, then dies. Within the
// heartbeat timeout the API says the task is not live, and Sync now starts a fresh task with no
// reaper and no cleanup call.
func TestKilledWorkerIsReplacedWithoutCleanup(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		ctx := context.Background()
		a := e.addAccount(e.alice, "work")
		first := e.startSync(e.alice, a.ID)
		tk, ok, err := e.tasks.Claim(ctx, "doomed-worker")
		if err != nil || !ok || tk.ID != first.Task.ID {
			t.Fatalf("claim: %v %v %s", ok, err, tk.ID)
		}
		if _, err := e.tasks.Heartbeat(ctx, tk.Lease(), task.Progress{MessagesTotal: 10, MessagesDone: 3}); err != nil {
			t.Fatal(err)
		}
		lastBeat := time.Now()
		var got httpapi.TaskJSON
		e.request(e.alice, "GET", "/api/sync/tasks/"+tk.ID, nil).want(t, 200).json(t, &got)
		if !got.Live || got.State != "running" {
			t.Fatalf("right after a heartbeat: %+v, want live and running", got)
		}
		// The worker is dead now. Poll as a UI would.
		timeout := e.tasks.Config().HeartbeatTimeout
		for {
			e.request(e.alice, "GET", "/api/sync/tasks/"+tk.ID, nil).want(t, 200).json(t, &got)
			if !got.Live {
				break
			}
			if time.Since(lastBeat) > timeout+500*time.Millisecond {
				t.Fatalf("task still live %s after its last heartbeat (timeout %s)", time.Since(lastBeat), timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got.State != "running" {
			t.Fatalf("no reaper ran, yet the task is %s", got.State)
		}
		var acct httpapi.AccountJSON
		e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d", a.ID), nil).want(t, 200).json(t, &acct)
		if acct.LastTask == nil || acct.LastTask.Live {
			t.Fatalf("the account shows its dead task as live: %+v", acct.LastTask)
		}
		next := e.startSync(e.alice, a.ID)
		if next.Reused || next.Task.ID == tk.ID || !next.Task.Live {
			t.Fatalf("Sync now after the worker died: %+v, want a fresh live task", next)
		}
		e.request(e.alice, "GET", "/api/sync/tasks/"+tk.ID, nil).want(t, 200).json(t, &got)
		if got.State != "failed" || !strings.Contains(got.Error, "heartbeat") {
			t.Fatalf("the dead task is %s (%q), want failed for its silence", got.State, got.Error)
		}
	})
}
