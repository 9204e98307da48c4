package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// instances opens n Stores on one fresh PostgreSQL database, as n mailsync instances would.
func instances(t *testing.T, n int) []*store.Store {
	t.Helper()
	dsn := storetest.DSN(t, "postgres")
	out := []*store.Store{storetest.OpenDSN(t, dsn, true)}
	for len(out) < n {
		out = append(out, storetest.OpenDSN(t, dsn, false))
	}
	return out
}

// writerLease is the lease of a running task of an account of its own: the fence that a batch
// of changes for any account passes through. The store's numbering must not rest on the
// lifecycle's one active task per account, so the tests below let several leases write one
// account's changes at once.
func writerLease(t *testing.T, s *store.Store) task.Lease {
	t.Helper()
	ctx := context.Background()
	m, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	carrier := storetest.SeedAccount(t, s)
	if _, _, err := m.Start(ctx, carrier.ID, false); err != nil {
		t.Fatal(err)
	}
	tk, ok, err := m.ClaimAccount(ctx, "writer", carrier.ID)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	return tk.Lease()
}

// batch is n new messages for the account's folder, from UID first on.
func batch(accountID int64, folder string, first uint32, n int) store.Batch {
	b := store.Batch{Folder: store.Folder{AccountID: accountID, Name: folder, Delimiter: "/", UIDValidity: 1,
		UIDNext: first + uint32(n)}}
	for i := range n {
		uid := first + uint32(i)
		b.Messages = append(b.Messages, store.Message{UID: uid, MessageID: fmt.Sprintf("<%s-%d@x>", folder, uid), Raw: []byte("raw")})
	}
	return b
}

// reader follows one account's change log with a cursor, as an API client does.
type reader struct {
	s       *store.Store
	account int64
	page    int
	cursor  int64
	seen    []int64
}

// poll reads every change after the cursor that is visible now.
func (r *reader) poll(ctx context.Context) error {
	for {
		cs, err := r.s.Changes(ctx, r.account, r.cursor, r.page)
		if err != nil {
			return err
		}
		for _, c := range cs {
			r.seen = append(r.seen, c.Seq)
			r.cursor = c.Seq
		}
		if len(cs) < r.page {
			return nil
		}
	}
}

// sawExactly says how the changes a reader saw differ from the log's, which it must have seen
// each once and in order.
func sawExactly(seen, log []int64) error {
	if slices.Equal(seen, log) {
		return nil
	}
	var missed []int64
	for _, n := range log {
		if !slices.Contains(seen, n) {
			missed = append(missed, n)
		}
	}
	return fmt.Errorf("saw %d changes %v, the log has %d %v; never saw %v", len(seen), seen, len(log), log, missed)
}

// logSeqs is every number in the account's change log, ascending, read after the writers ended.
func logSeqs(t *testing.T, s *store.Store, account int64) []int64 {
	t.Helper()
	rows, err := s.DB().Query(`SELECT seq FROM changes WHERE account_id = $1 ORDER BY seq`, account)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

type holdKey struct{}

// TestCursorNeverPassesAnUncommittedChange is the race a cursor over change numbers must
// survive, played out step by step with two instances writing one account: A's batch has its
// numbers but has not committed; B's batch commits; a reader polls; A commits; the reader polls
// again.
//
// With the store's numbering (the account's change head, locked until commit) B cannot take a
// number while A holds the head: it waits, the reader sees nothing early, and then A's changes
// and B's in order. With numbers from a PostgreSQL sequence, B takes the numbers after A's
// without waiting and commits first; the reader's cursor passes A's numbers before they are
// visible, and A's changes are never seen. The same check passes the first and fails the second.
func TestCursorNeverPassesAnUncommittedChange(t *testing.T) {
	for _, naive := range []bool{false, true} {
		name := map[bool]string{false: "change head", true: "naive sequence"}[naive]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			in := instances(t, 2)
			a, b := in[0], in[1]
			acct := storetest.SeedAccount(t, a)
			la, lb := writerLease(t, a), writerLease(t, b)
			at, release := make(chan struct{}), make(chan struct{})
			store.PauseBeforeCommit(a, func(ctx context.Context) {
				if ctx.Value(holdKey{}) != nil {
					close(at)
					<-release
				}
			})
			if naive {
				for _, s := range in {
					if err := store.NumberChangesWithSequence(ctx, s); err != nil {
						t.Fatal(err)
					}
				}
			}

			aDone := make(chan error, 1)
			go func() {
				_, err := a.CommitBatch(context.WithValue(ctx, holdKey{}, true), la, task.Progress{}, batch(acct.ID, "A", 1, 3))
				aDone <- err
			}()
			<-at // A has numbered its 4 changes and holds them uncommitted
			bDone := make(chan error, 1)
			go func() {
				_, err := b.CommitBatch(ctx, lb, task.Progress{}, batch(acct.ID, "B", 1, 2))
				bDone <- err
			}()
			select {
			case err := <-bDone:
				if !naive {
					t.Fatalf("B committed while A held the account's change head: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(500 * time.Millisecond):
				if naive {
					t.Fatal("with a sequence B should not wait for A")
				}
			}
			r := &reader{s: b, account: acct.ID, page: 100}
			if err := r.poll(ctx); err != nil {
				t.Fatal(err)
			}
			close(release)
			if err := <-aDone; err != nil {
				t.Fatal(err)
			}
			if !naive {
				if err := <-bDone; err != nil {
					t.Fatal(err)
				}
			}
			if err := r.poll(ctx); err != nil {
				t.Fatal(err)
			}
			err := sawExactly(r.seen, logSeqs(t, a, acct.ID))
			switch {
			case !naive && err != nil:
				t.Fatalf("with the change head: %v", err)
			case naive && err == nil:
				t.Fatal("with a sequence the reader saw every change: the race did not happen")
			case naive:
				t.Logf("with a sequence, as expected: %v", err)
			}
		})
	}
}

// TestCursorsUnderConcurrentInstances runs several instances writing the change logs of several
// accounts at once, each account from every instance, while readers on every instance poll each
// account with small pages: every reader sees every change of its account exactly once, in
// order, numbered 1, 2, 3, ... without a gap, and the log holds exactly what was written.
func TestCursorsUnderConcurrentInstances(t *testing.T) {
	ctx := context.Background()
	const (
		nInstances = 3
		nAccounts  = 4
		batches    = 25 // per writer
		perBatch   = 3  // messages per batch: 1 folder.created, then 3 message.created per batch
	)
	in := instances(t, nInstances)
	accounts := make([]int64, nAccounts)
	for i := range accounts {
		accounts[i] = storetest.SeedAccount(t, in[0]).ID
	}
	var (
		writers sync.WaitGroup
		errs    = make(chan error, nInstances*nAccounts*4)
		stop    atomic.Bool
	)
	for i, s := range in {
		for _, acct := range accounts {
			l := writerLease(t, s)
			folder := fmt.Sprintf("from-%d", i)
			writers.Go(func() {
				for n := range batches {
					if _, err := s.CommitBatch(ctx, l, task.Progress{}, batch(acct, folder, uint32(n*perBatch+1), perBatch)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	var (
		readers sync.WaitGroup
		mu      sync.Mutex
		all     []*reader
	)
	for _, s := range in {
		for _, acct := range accounts {
			r := &reader{s: s, account: acct, page: 7}
			mu.Lock()
			all = append(all, r)
			mu.Unlock()
			readers.Go(func() {
				for !stop.Load() {
					if err := r.poll(ctx); err != nil {
						errs <- err
						return
					}
				}
				errs <- r.poll(ctx) // the last commits are visible: read them too
			})
		}
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	perAccount := int64(nInstances * (1 + batches*perBatch))
	for _, acct := range accounts {
		log := logSeqs(t, in[0], acct)
		want := make([]int64, perAccount)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(log, want) {
			t.Fatalf("account %d: log %v, want 1 to %d without a gap", acct, log, perAccount)
		}
		cs, err := in[0].Changes(ctx, acct, 0, int(perAccount)+1)
		if err != nil {
			t.Fatal(err)
		}
		created := map[string]bool{}
		for _, c := range cs {
			if c.Kind == changes.MessageCreated {
				created[fmt.Sprintf("%s/%d", c.Folder, c.UID)] = true
			}
		}
		if len(created) != nInstances*batches*perBatch {
			t.Fatalf("account %d: %d distinct messages created, want %d", acct, len(created), nInstances*batches*perBatch)
		}
	}
	polls := 0
	for _, r := range all {
		if err := sawExactly(r.seen, logSeqs(t, r.s, r.account)); err != nil {
			t.Fatalf("reader of account %d: %v", r.account, err)
		}
		polls += len(r.seen)
	}
	t.Logf("%d readers saw %d changes, each once and in order", len(all), polls)
}
