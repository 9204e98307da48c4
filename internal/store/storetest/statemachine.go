package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"mailsync/internal/task"
)

// testStateMachine drives the lifecycle with random sequences of start, claim, heartbeat, finish,
// interrupt, cancel, reap and clock moves, from several workers at once (some of them zombies),
// and checks the invariants after every step.
func testStateMachine(t *testing.T, dialect string) {
	e := newEnv(t, dialect)
	rapid.Check(t, func(rt *rapid.T) {
		accounts := []int64{SeedAccount(t, e.store).ID, SeedAccount(t, e.store).ID}
		m := &machine{env: e, accounts: accounts, terminal: map[string]task.Task{}, epochs: map[string]int64{}}
		rt.Repeat(map[string]func(*rapid.T){
			"start": func(rt *rapid.T) {
				acct := rapid.SampledFrom(accounts).Draw(rt, "account")
				tk, _, err := e.tasks.Start(context.Background(), acct, rapid.Bool().Draw(rt, "full"))
				if err != nil {
					rt.Fatal(err)
				}
				if !tk.State.Active() || tk.AccountID != acct {
					rt.Fatalf("Start returned %+v", tk)
				}
			},
			"claim": func(rt *rapid.T) {
				owner := fmt.Sprintf("w%d", rapid.IntRange(0, 2).Draw(rt, "worker"))
				tk, ok, err := e.tasks.Claim(context.Background(), owner)
				if err != nil {
					rt.Fatal(err)
				}
				if ok {
					if tk.State != task.Running || tk.Owner != owner {
						rt.Fatalf("Claim returned %+v", tk)
					}
					m.leases = append(m.leases, tk.Lease())
				}
			},
			"heartbeat": func(rt *rapid.T) {
				l, ok := m.pickLease(rt)
				if !ok {
					rt.Skip("no lease")
				}
				_, err := e.tasks.Heartbeat(context.Background(), l, task.Progress{MessagesTotal: 10, MessagesDone: rapid.IntRange(0, 10).Draw(rt, "done")})
				m.checkFenced(rt, l, err)
			},
			"finish": func(rt *rapid.T) {
				l, ok := m.pickLease(rt)
				if !ok {
					rt.Skip("no lease")
				}
				state := rapid.SampledFrom([]task.State{task.Succeeded, task.Failed, task.Cancelled}).Draw(rt, "state")
				_, err := e.tasks.Finish(context.Background(), l, state, task.Progress{MessagesTotal: 10, MessagesDone: 7}, "")
				m.checkFenced(rt, l, err)
			},
			"interrupt": func(rt *rapid.T) {
				l, ok := m.pickLease(rt)
				if !ok {
					rt.Skip("no lease")
				}
				_, err := e.tasks.Interrupt(context.Background(), l, task.Progress{})
				m.checkFenced(rt, task.Lease{TaskID: l.TaskID, Epoch: l.Epoch + 1}, err) // it moves the epoch on
			},
			"cancel": func(rt *rapid.T) {
				l, ok := m.pickLease(rt)
				if !ok {
					rt.Skip("no lease")
				}
				if _, err := e.tasks.Cancel(context.Background(), l.TaskID); err != nil {
					rt.Fatal(err)
				}
			},
			"reap": func(rt *rapid.T) {
				if _, err := e.tasks.Reap(context.Background()); err != nil {
					rt.Fatal(err)
				}
			},
			"advance": func(rt *rapid.T) {
				e.clock.Advance(time.Duration(rapid.IntRange(1, 90).Draw(rt, "seconds")) * time.Second)
			},
			"": func(rt *rapid.T) { m.check(rt) },
		})
	})
}

type machine struct {
	env      env
	accounts []int64
	leases   []task.Lease         // every lease ever handed out, live or stale
	terminal map[string]task.Task // terminal rows as first seen: they must never change
	epochs   map[string]int64     // the highest epoch seen per task: it never goes back
}

func (m *machine) pickLease(rt *rapid.T) (task.Lease, bool) {
	if len(m.leases) == 0 {
		return task.Lease{}, false
	}
	return rapid.SampledFrom(m.leases).Draw(rt, "lease"), true
}

// checkFenced checks a lease holder's write against the row: it may succeed only if the lease was
// still the task's current running epoch (after is that epoch as the write leaves it).
func (m *machine) checkFenced(rt *rapid.T, after task.Lease, err error) {
	if err != nil && !errors.Is(err, task.ErrLeaseLost) {
		rt.Fatal(err)
	}
	tk, gerr := m.env.tasks.Get(context.Background(), after.TaskID)
	if gerr != nil {
		rt.Fatal(gerr)
	}
	if err == nil && tk.Epoch != after.Epoch {
		rt.Fatalf("a fenced write succeeded, leaving epoch %d, but the task is at epoch %d", after.Epoch, tk.Epoch)
	}
}

func (m *machine) check(rt *rapid.T) {
	ctx := context.Background()
	for _, acct := range m.accounts {
		var active int
		if err := m.env.store.DB().QueryRowContext(ctx,
			`SELECT count(*) FROM sync_tasks WHERE account_id = $1 AND state IN ('queued', 'running')`, acct).Scan(&active); err != nil {
			rt.Fatal(err)
		}
		if active > 1 {
			rt.Fatalf("account %d has %d active tasks", acct, active)
		}
	}
	for _, l := range m.leases {
		tk, err := m.env.tasks.Get(ctx, l.TaskID)
		if err != nil {
			rt.Fatal(err)
		}
		if tk.Epoch < m.epochs[tk.ID] {
			rt.Fatalf("task %s went back from epoch %d to %d", tk.ID, m.epochs[tk.ID], tk.Epoch)
		}
		m.epochs[tk.ID] = tk.Epoch
		if tk.State == task.Running && (tk.Owner == "" || tk.StartedAt.IsZero()) {
			rt.Fatalf("running task without owner or start: %+v", tk)
		}
		if tk.State.Active() != tk.FinishedAt.IsZero() {
			rt.Fatalf("task %s is %s with finished_at %v", tk.ID, tk.State, tk.FinishedAt)
		}
		if tk.Attempt > tk.MaxAttempts {
			rt.Fatalf("task %s at attempt %d of %d", tk.ID, tk.Attempt, tk.MaxAttempts)
		}
		if prev, ok := m.terminal[tk.ID]; ok {
			tk.ObservedAt = prev.ObservedAt
			if fmt.Sprint(prev) != fmt.Sprint(tk) {
				rt.Fatalf("terminal task changed:\n was %+v\n now %+v", prev, tk)
			}
		} else if !tk.State.Active() {
			m.terminal[tk.ID] = tk
		}
	}
}
