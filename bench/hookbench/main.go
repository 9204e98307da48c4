// Command hookbench measures webhook delivery on loopback: the real deliverer (package webhook,
// its production batch size and concurrency) sends the change log of a few accounts to a
// receiver in this process.
//
//  1. live: changes are committed at a steady rate (-rate) while the receiver is healthy; it
//     reports changes per second delivered and the delay from each commit (CommitBatch returned)
//     to its arrival at the receiver: p50, p99, max.
//
//  2. backlog: the receiver goes down (its port refuses connections) while the writers commit
//     -backlog changes; the Go heap (after a GC) and the process RSS are sampled as the backlog
//     grows, to show that the deliverer's memory does not grow with it. Then the receiver comes
//     back and the backlog drains: changes per second of the drain.
//
//     go run ./bench/hookbench [-db sqlite:PATH | postgres://...] [-changes 20000] [-backlog 100000]
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mailsync/internal/changes"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // to make and drop the run's own schema

	"mailsync/internal/instance/instancetest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/webhook"
)

func main() {
	db := flag.String("db", "", "database (default: a temporary SQLite file; postgres://... gets a schema of its own)")
	changes := flag.Int("changes", 20000, "changes committed in the live phase")
	backlog := flag.Int("backlog", 100000, "changes committed while the receiver is down")
	rate := flag.Int("rate", 2000, "changes per second committed in the live phase")
	accounts := flag.Int("accounts", 4, "accounts (each an (endpoint, account) pair)")
	perCommit := flag.Int("commit", 50, "changes per committed batch")
	flag.Parse()
	if err := run(*db, *changes, *backlog, *rate, *accounts, *perCommit); err != nil {
		fmt.Fprintln(os.Stderr, "hookbench:", err)
		os.Exit(1)
	}
}

// receiver counts the changes it got by each account's highest number (delivery is in order per
// account, so that is how many distinct changes arrived) and, while recording, when each change
// first arrived. In the backlog phase it records nothing, so that its own memory stays flat too.
type receiver struct {
	mu        sync.Mutex
	recording bool
	arrived   map[string]time.Time
	high      map[int64]int64
	firstNew  time.Time // the first arrival past the live phase
	liveTotal int64
	posts     atomic.Int64
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	now := time.Now()
	r.posts.Add(1)
	var b struct {
		Changes []struct {
			ID        string `json:"id"`
			AccountID int64  `json:"account_id"`
			Seq       int64  `json:"seq"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	r.mu.Lock()
	for _, c := range b.Changes {
		if r.recording {
			if _, dup := r.arrived[c.ID]; !dup {
				r.arrived[c.ID] = now
			}
		}
		r.high[c.AccountID] = max(r.high[c.AccountID], c.Seq)
	}
	if !r.recording && r.firstNew.IsZero() && r.countLocked() > r.liveTotal {
		r.firstNew = now
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) countLocked() int64 {
	var n int64
	for _, h := range r.high {
		n += h
	}
	return n
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int(r.countLocked())
}

// writer commits message.created changes for one account through a claimed task, as a sync does,
// and remembers when each commit returned.
type writer struct {
	s     *store.Store
	lease task.Lease
	acct  int64
	next  uint32
}

// commit writes n changes; with committed set, it records when each commit returned (the backlog
// phase passes nil, so that the bench's own bookkeeping does not grow with the backlog).
func (w *writer) commit(ctx context.Context, n int, committed map[string]time.Time, mu *sync.Mutex) (int, error) {
	msgs := make([]store.Message, n)
	for i := range msgs {
		msgs[i] = store.Message{UID: w.next, MessageID: fmt.Sprintf("<%d.%d@bench>", w.acct, w.next), Subject: "s",
			From: "a@bench", Flags: []string{}, Size: 3, Raw: []byte("raw")}
		w.next++
	}
	before, err := w.s.ChangeHead(ctx, w.acct)
	if err != nil {
		return 0, err
	}
	if _, err := w.s.CommitBatch(ctx, w.lease, task.Progress{}, store.Batch{
		Folder: store.Folder{AccountID: w.acct, Name: "INBOX", Delimiter: "/", UIDValidity: 1, UIDNext: w.next}, Messages: msgs}); err != nil {
		return 0, err
	}
	at := time.Now()
	after, err := w.s.ChangeHead(ctx, w.acct)
	if err != nil {
		return 0, err
	}
	if committed != nil {
		mu.Lock()
		for seq := before.Last + 1; seq <= after.Last; seq++ {
			committed[changes.ID(w.acct, seq)] = at
		}
		mu.Unlock()
	}
	return int(after.Last - before.Last), nil
}

func run(dsn string, liveChanges, backlog, rate, accounts, perCommit int) error {
	ctx := context.Background()
	dsn, cleanup, err := database(dsn)
	if err != nil {
		return err
	}
	defer cleanup()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		return err
	}
	box, err := secret.New(instancetest.Key())
	if err != nil {
		return err
	}
	tasks, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		return err
	}
	u, err := s.CreateUser(ctx, rand.Text()+"@bench", "x", false)
	if err != nil {
		return err
	}
	var writers []*writer
	for i := range accounts {
		a, err := s.CreateAccount(ctx, store.Account{UserID: u.ID, Name: fmt.Sprint("acct", i), IMAPHost: "h", IMAPPort: 143,
			TLSMode: "none", Login: "l", SecretEnc: []byte("x")})
		if err != nil {
			return err
		}
		if _, _, err := tasks.Start(ctx, a.ID, false); err != nil {
			return err
		}
		tk, err := s.ClaimAccountTask(ctx, "hookbench", a.ID, time.Time{})
		if err != nil {
			return err
		}
		writers = append(writers, &writer{s: s, lease: tk.Lease(), acct: a.ID, next: 1})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	rcv := &receiver{recording: true, arrived: map[string]time.Time{}, high: map[int64]int64{}}
	srv := &http.Server{Handler: rcv}
	go func() { _ = srv.Serve(ln) }()

	plain := webhook.NewSecret()
	if _, err := s.CreateWebhook(ctx, store.Webhook{UserID: u.ID, URL: "http://" + addr + "/hook", AllAccounts: true},
		func(id int64) []byte { return box.Seal([]byte(plain), secret.WebhookContext(id)) }); err != nil {
		return err
	}
	// Production settings but the retry delays: a receiver that comes back is found within 2 s.
	d := webhook.New(s, box, webhook.NewClient(webhook.ClientConfig{AllowPrivate: true}),
		webhook.Config{RetryBase: time.Second, RetryMax: 2 * time.Second, Log: slog.New(slog.DiscardHandler)})
	s.OnChanges(func(int64, []changes.Change) { d.Wake() })
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = d.Run(runCtx) }()

	var (
		mu        sync.Mutex
		committed = map[string]time.Time{}
	)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("hookbench: %s, %d accounts, commits of %d changes, Go %s, %d CPUs, load average %s\n\n",
		s.Dialect(), accounts, perCommit, runtime.Version(), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))

	// 1. Live: a steady rate of commits, round robin over the accounts.
	interval := time.Duration(float64(time.Second) * float64(perCommit) / float64(rate))
	start := time.Now()
	tick := time.NewTicker(interval)
	for i := 0; i*perCommit < liveChanges; i++ {
		<-tick.C
		if _, err := writers[i%len(writers)].commit(ctx, perCommit, committed, &mu); err != nil {
			return err
		}
	}
	tick.Stop()
	written := time.Since(start)
	total := len(committed)
	if err := waitFor(rcv, total, 2*time.Minute); err != nil {
		return err
	}
	elapsed := time.Since(start)
	var delays []time.Duration
	rcv.mu.Lock()
	for id, at := range committed {
		delays = append(delays, rcv.arrived[id].Sub(at))
	}
	rcv.mu.Unlock()
	slices.Sort(delays)
	q := func(p float64) time.Duration {
		return delays[min(len(delays)-1, int(p*float64(len(delays))))].Round(time.Millisecond)
	}
	fmt.Printf("| live phase | value |\n|---|---:|\n")
	fmt.Printf("| changes committed | %d in %s (%.0f/s) |\n", total, written.Round(time.Millisecond), float64(total)/written.Seconds())
	fmt.Printf("| changes delivered | %d in %s (%.0f/s), %d POSTs |\n", rcv.count(), elapsed.Round(time.Millisecond),
		float64(rcv.count())/elapsed.Seconds(), rcv.posts.Load())
	fmt.Printf("| commit → delivery p50 / p99 / max | %s / %s / %s |\n\n", q(0.5), q(0.99), delays[len(delays)-1].Round(time.Millisecond))

	// 2. Backlog: the receiver is down while the log grows; memory sampled as it does.
	_ = srv.Close()
	rcv.mu.Lock()
	rcv.recording, rcv.arrived, rcv.liveTotal = false, nil, int64(total)
	rcv.mu.Unlock()
	fmt.Printf("| backlog (receiver down) | Go heap after GC | RSS |\n|---:|---:|---:|\n")
	marks := []int{0, backlog / 10, backlog / 4, backlog / 2, 3 * backlog / 4, backlog}
	next, grown := 0, 0
	for i := 0; ; i++ {
		if next < len(marks) && grown >= marks[next] {
			heap, rss := memory()
			fmt.Printf("| %d | %.1f MiB | %.1f MiB |\n", grown, heap, rss)
			next++
		}
		if grown >= backlog {
			break
		}
		n, err := writers[i%len(writers)].commit(ctx, perCommit, nil, nil)
		if err != nil {
			return err
		}
		grown += n
	}
	hooks, err := s.WebhookStates(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, st := range hooks {
		fmt.Printf("\nthe endpoint is %d changes behind, the oldest %s old", st.Behind, st.Now.Sub(st.OldestUndelivered).Round(time.Second))
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("the receiver's port is taken: %w", err)
	}
	srv = &http.Server{Handler: rcv}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	drainStart := time.Now()
	want := total + grown
	var peakHeap, peakRSS float64
	done := make(chan error, 1)
	go func() { done <- waitFor(rcv, want, 10*time.Minute) }()
	sample := time.NewTicker(500 * time.Millisecond)
	defer sample.Stop()
	for drained := false; !drained; {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			drained = true
		case <-sample.C:
			h, r := memory()
			peakHeap, peakRSS = max(peakHeap, h), max(peakRSS, r)
		}
	}
	end := time.Now()
	rcv.mu.Lock()
	first := rcv.firstNew
	rcv.mu.Unlock()
	fmt.Printf("\n\nthe receiver back: first change after %s (the retry delay), the %d changes drained in %s after that (%.0f/s); "+
		"peak during the drain: heap %.1f MiB, RSS %.1f MiB\n",
		first.Sub(drainStart).Round(time.Millisecond), want-total, end.Sub(first).Round(time.Millisecond),
		float64(want-total)/end.Sub(first).Seconds(), peakHeap, peakRSS)
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("load average at the end: %s\n", strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}

// waitFor waits until the receiver holds n changes.
func waitFor(r *receiver, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for r.count() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d changes delivered after %s", r.count(), n, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// memory is the live Go heap after a collection and the process's resident set, in MiB.
func memory() (heap, rss float64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapAlloc) / (1 << 20)
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = float64(pages*int64(os.Getpagesize())) / (1 << 20)
		}
	}
	return heap, rss
}

// database returns the DSN to run on: a temporary SQLite file, or a schema of its own in the
// PostgreSQL database given, dropped at the end.
func database(dsn string) (string, func(), error) {
	if dsn == "" {
		dir, err := os.MkdirTemp("", "hookbench")
		if err != nil {
			return "", nil, err
		}
		return "sqlite:" + filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }, nil
	}
	if !strings.HasPrefix(dsn, "postgres") {
		return dsn, func() {}, nil
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, err
	}
	schema := "hookbench_" + strings.ToLower(rand.Text()[:10])
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		db.Close()
		return "", nil, err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		db.Close()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		_, _ = db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		db.Close()
	}, nil
}
