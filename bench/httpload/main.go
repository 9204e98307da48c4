// Command httpload measures the HTTP API on loopback: requests per second and latency of
// GET /api/sync/tasks/{id} and of a storm of POST /api/accounts/{id}/sync, beside a trivial
// net/http handler on the same machine as the ceiling. It builds its own database (a temporary
// SQLite file unless -db says otherwise), runs for a bounded time and prints a Markdown table.
//
//	go run ./bench/httpload [-db sqlite:/tmp/x.db | postgres://...] [-duration 5s] [-concurrency 32]
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

func main() {
	db := flag.String("db", "", "database (default: a temporary SQLite file)")
	duration := flag.Duration("duration", 5*time.Second, "how long each scenario runs")
	concurrency := flag.Int("concurrency", 32, "concurrent clients")
	rounds := flag.Int("rounds", 3, "rounds of every scenario, interleaved; the table shows medians")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpload:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "httpload:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*db, *duration, *concurrency, *rounds); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func run(dsn string, duration time.Duration, concurrency, rounds int) error {
	ctx := context.Background()
	if dsn == "" {
		dir, err := os.MkdirTemp("", "httpload")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dsn = "sqlite:" + filepath.Join(dir, "bench.db")
	}
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		return err
	}
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	// The Instance serve builds, without workers (the benchmark holds the one running task
	// itself) and with a login check that accepts anything: it measures HTTP, not IMAP.
	in, err := instance.New(instance.Config{
		Store: s, DSN: dsn, Key: key, Lifecycle: task.DefaultConfig(), Login: instancetest.AcceptAnyLogin{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Addr: "127.0.0.1:0",
		API: httpapi.Config{Version: "bench"},
	})
	if err != nil {
		return err
	}
	defer in.Close()
	tasks, box := in.Tasks, in.Box
	runCtx, stopInstance := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- in.Run(runCtx) }()
	defer func() { stopInstance(); _ = <-runDone }()

	// One user, one account, one running task: what a UI polling a sync asks for.
	u, err := s.CreateUser(ctx, "bench-"+rand.Text()[:8]+"@example.test", "unused", false)
	if err != nil {
		return err
	}
	token, hash := auth.NewToken()
	if _, err := s.CreateToken(ctx, u.ID, hash, "bench"); err != nil {
		return err
	}
	acct, err := s.CreateAccount(ctx, store.Account{UserID: u.ID, Name: "bench", IMAPHost: "127.0.0.1", IMAPPort: 143,
		TLSMode: "none", Login: "bench", SecretEnc: box.Seal([]byte("x"), secret.AccountContext("bench", "127.0.0.1"))})
	if err != nil {
		return err
	}
	if _, _, err := tasks.Start(ctx, acct.ID, false); err != nil {
		return err
	}
	running, ok, err := tasks.Claim(ctx, "bench-worker")
	if err != nil || !ok {
		return fmt.Errorf("claim: %v", err)
	}
	progress := task.Progress{MessagesTotal: 1000, MessagesDone: 400}
	if _, err := tasks.Heartbeat(ctx, running.Lease(), progress); err != nil {
		return err
	}
	// The running task keeps beating, so the instance's reaper leaves it alone however long the
	// run lasts.
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-time.After(task.DefaultConfig().HeartbeatInterval):
				_, _ = tasks.Heartbeat(runCtx, running.Lease(), progress)
			}
		}
	}()

	apiURL := in.URL()
	trivialURL, stopTrivial, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	}))
	if err != nil {
		return err
	}
	defer stopTrivial()

	authz := http.Header{"Authorization": {"Bearer " + token}}
	post := http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}}
	scenarios := []scenario{
		{name: "trivial net/http handler (ceiling)", method: "GET", url: trivialURL + "/"},
		{name: "GET /api/sync/tasks/{id}", method: "GET", url: apiURL + "/api/sync/tasks/" + running.ID, header: authz},
		{name: "POST /api/accounts/{id}/sync (storm, live task reused)", method: "POST", url: fmt.Sprintf("%s/api/accounts/%d/sync", apiURL, acct.ID), header: post, body: `{"force_full":false}`, want: 202},
	}
	fmt.Printf("engine %s · %d concurrent clients · %s per scenario · %d interleaved rounds, medians shown · GOMAXPROCS %d · %s/%s\n\n",
		s.Dialect(), concurrency, duration, rounds, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	// Rounds interleave the scenarios so that a burst of load from elsewhere on the machine hits
	// all of them alike; the ratio is taken within each round.
	all := make([][]result, len(scenarios))
	var ratios []float64
	for range rounds {
		for i, sc := range scenarios {
			all[i] = append(all[i], sc.run(duration, concurrency))
		}
		ratios = append(ratios, all[1][len(all[1])-1].rps/all[0][len(all[0])-1].rps)
	}
	fmt.Println("| scenario | requests/s | p50 | p99 | errors |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for i, sc := range scenarios {
		r := all[i]
		errs := 0
		for _, x := range r {
			errs += x.errors
		}
		fmt.Printf("| %s | %.0f | %s | %s | %d |\n", sc.name,
			median(r, func(x result) float64 { return x.rps }),
			time.Duration(median(r, func(x result) float64 { return float64(x.p50) })).Round(10*time.Microsecond),
			time.Duration(median(r, func(x result) float64 { return float64(x.p99) })).Round(10*time.Microsecond), errs)
	}
	slices.Sort(ratios)
	fmt.Printf("\ntask GET / trivial handler, requests/s: median %.0f %% (rounds: %s)\n", 100*ratios[len(ratios)/2], percents(ratios))
	return nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func percents(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.0f %%", 100*x))
	}
	return strings.Join(parts, ", ")
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

type scenario struct {
	name, method, url string
	header            http.Header
	body              string
	want              int // expected status; 0 means 200
}

type result struct {
	n, errors int
	rps       float64
	p50, p99  time.Duration
}

// run keeps concurrency clients busy for d, each on its own keep-alive connection.
func (sc scenario) run(d time.Duration, concurrency int) result {
	want := sc.want
	if want == 0 {
		want = 200
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}
	defer client.CloseIdleConnections()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errors    int
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range concurrency {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				var body io.Reader
				if sc.body != "" {
					body = strings.NewReader(sc.body)
				}
				req, _ := http.NewRequest(sc.method, sc.url, body)
				req.Header = sc.header.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				if resp.StatusCode != want {
					bad++
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Round(10 * time.Microsecond)
	}
	return result{n: len(latencies), errors: errors, rps: float64(len(latencies)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}
}
