package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
)

// TestInventedMethodsLeaveMetricsSmall: 2,000 requests with invented 50 kB methods once grew
// /metrics by 100 MB, for good; they now count as method "other". The methods here are 2 kB
// and there are 500 of them (1 MB of series before the fix), which keeps the test quick: any
// number above zero grew the output.
func TestInventedMethodsLeaveMetricsSmall(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		before := len(e.request(user{}, "GET", "/metrics", nil).want(t, 200).body)

		const requests, size = 500, 2000
		var wg sync.WaitGroup
		errs := make(chan error, requests)
		for w := range 8 {
			wg.Go(func() {
				padding := strings.Repeat("X", size-8)
				for i := w; i < requests; i += 8 {
					method := fmt.Sprintf("M%07d", i) + padding // each one distinct
					req, err := http.NewRequest(method, e.ts.URL+"/api/accounts", nil)
					if err != nil {
						errs <- err
						return
					}
					resp, err := e.ts.Client().Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode < 400 {
						errs <- fmt.Errorf("an invented method answered %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		after := e.request(user{}, "GET", "/metrics", nil).want(t, 200).body
		if grown := len(after) - before; grown > 4096 {
			t.Fatalf("/metrics grew by %d bytes after %d invented methods (from %d)", grown, requests, before)
		}
		if !strings.Contains(string(after), `method="other"`) {
			t.Fatal(`/metrics does not count the invented methods as "other"`)
		}
	})
}

// clientFrom is an HTTP client whose connections come from ip, another loopback address (Linux
// answers on all of 127.0.0.0/8): a client elsewhere, as the server sees it.
func (e *env) clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// loginFrom signs in with c.
func (e *env) loginFrom(c *http.Client, email, password string) response {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, err := http.NewRequest("POST", e.ts.URL+"/api/login", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{Response: resp, body: data}
}

// TestLockoutCannotBeAimedAtAUser: ten failures from any address once locked the real user out
// everywhere (429). Now they lock out the attacker's address only.
func TestLockoutCannotBeAimedAtAUser(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect) // 5 attempts per address, 5 failures per address and email
		attacker := e.clientFrom("127.0.0.2")
		var statuses []int
		for range 10 {
			statuses = append(statuses, e.loginFrom(attacker, e.alice.Email, "guess").StatusCode)
		}
		if want := []int{401, 401, 401, 401, 401, 429, 429, 429, 429, 429}; !slices.Equal(statuses, want) {
			t.Fatalf("ten guesses answered %v, want %v", statuses, want)
		}
		// The attacker's address stays limited, for alice and for anyone else.
		e.loginFrom(attacker, e.alice.Email, e.alice.Password).wantProblem(t, http.StatusTooManyRequests)
		e.loginFrom(attacker, e.bob.Email, "guess").wantProblem(t, http.StatusTooManyRequests)

		// Alice, from home, signs in at once, and again, and is not counted against.
		home := e.clientFrom("127.0.0.3")
		for range 8 {
			e.loginFrom(home, e.alice.Email, e.alice.Password).want(t, 200)
		}
		// A typo from home is one failure of her own, not a lockout.
		e.loginFrom(home, e.alice.Email, "typo").wantProblem(t, http.StatusUnauthorized)
		e.loginFrom(home, e.alice.Email, e.alice.Password).want(t, 200)
	})
}

// TestConcurrentLoginsAreBounded: 30 logins from 30 addresses once ran 30 argon2id hashes of
// 64 MiB at once (2.08 GB, answers after 14.7 s). The gate lets 2 run; the excess wait briefly
// and get 503 with Retry-After. Engines in turn, not in parallel, so the heap is this test's.
func TestConcurrentLoginsAreBounded(t *testing.T) {
	params := auth.Params{Memory: 64 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32} // the real memory cost
	const logins, slots, mib = 30, 2, 1 << 20
	for _, dialect := range storetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			e := newEnv(t, dialect, func(c *instance.Config) {
				c.API.PasswordParams, c.API.LoginConcurrency, c.API.LoginWait = params, slots, 200*time.Millisecond
			})
			hashStart := time.Now()
			hash, err := auth.HashPassword("a-real-password", params)
			oneHash := time.Since(hashStart)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.CreateUser(context.Background(), "dora@example.test", hash, false); err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			base := heapBytes()
			peak := base
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					peak = max(peak, heapBytes())
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}()

			answers := make([]response, logins)
			took := make([]time.Duration, logins)
			var wg sync.WaitGroup
			for i := range logins {
				c := e.clientFrom(fmt.Sprintf("127.0.1.%d", i+1))
				wg.Go(func() {
					start := time.Now()
					answers[i] = e.loginFrom(c, "dora@example.test", "a-real-password")
					took[i] = time.Since(start)
				})
			}
			wg.Wait()
			close(stop)
			<-sampled

			ok, busy := 0, 0
			for i, r := range answers {
				switch r.StatusCode {
				case 200:
					ok++
				case 503:
					busy++
					r.wantProblem(t, 503)
					if r.Header.Get("Retry-After") == "" {
						t.Errorf("login %d: 503 without Retry-After", i)
					}
				default:
					t.Errorf("login %d: %d %s", i, r.StatusCode, r.body)
				}
			}
			grown := (peak - base) / mib
			t.Logf("%d logins at once: %d signed in, %d told to retry; slowest answer %v (one check: %v); heap grew %d MiB",
				logins, ok, busy, slices.Max(took).Round(time.Millisecond), oneHash.Round(time.Millisecond), grown)
			if ok < slots {
				t.Errorf("only %d logins went through, want at least %d", ok, slots)
			}
			// 30 hashes at once hold 30 × 64 MiB; the gate holds 2, which the GC may keep twice.
			if limit := uint64(8 * 64); grown > limit {
				t.Errorf("the heap grew by %d MiB, want at most %d MiB (unbounded: %d MiB)", grown, limit, logins*64)
			}
			// A login either gets a slot within the wait and then takes about one check, or is
			// told to retry at the end of the wait; 30 at once took 30 checks' time.
			if slowest, bound := slices.Max(took), 2*time.Second+3*oneHash; slowest > bound {
				t.Errorf("the slowest answer took %v, want at most %v (one check takes %v)", slowest, bound, oneHash)
			}
		})
	}
}

func heapBytes() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// TestEventStreamsAreCapped: one user once held 2,000 streams (4,000 goroutines, 2,000 reads of
// the database a second). Streams are capped per user and per task; beyond, 429.
func TestEventStreamsAreCapped(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, func(c *instance.Config) { c.API.MaxStreamsPerUser, c.API.MaxStreamsPerTask = 3, 2 })
		var tasks []string
		for _, name := range []string{"a", "b", "c"} {
			tasks = append(tasks, e.startSync(e.alice, e.addAccount(e.alice, name).ID).Task.ID) // queued: streams stay open
		}
		open := func(task string) *stream {
			s := e.openStream(t, e.alice, task, "")
			if s.resp.StatusCode == 200 {
				s.next(t) // the snapshot: the stream is counted
			}
			return s
		}
		first := open(tasks[0])
		open(tasks[0])
		refusedByTask := open(tasks[0])
		open(tasks[1])
		refusedByUser := open(tasks[2])
		for name, s := range map[string]*stream{"a third stream on one task": refusedByTask, "a fourth stream of one user": refusedByUser} {
			if s.resp.StatusCode != http.StatusTooManyRequests || s.resp.Header.Get("Retry-After") == "" ||
				!strings.HasPrefix(s.resp.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("%s: %d %v, want a 429 problem with Retry-After", name, s.resp.StatusCode, s.resp.Header)
			}
		}
		// Another user is not counted against alice.
		if s := e.openStream(t, e.bob, tasks[2], ""); s.resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob on alice's task: %d, want 404", s.resp.StatusCode)
		}
		// A closed stream frees its place.
		first.close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := e.openStream(t, e.alice, tasks[0], "")
			if s.resp.StatusCode == 200 {
				break
			}
			s.close()
			if time.Now().After(deadline) {
				t.Fatal("a closed stream still counts after 5 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestStreamFloodFromOneUser: 200 streams at once from one user, with the default caps, get 20
// streams and 180 answers of 429.
func TestStreamFloodFromOneUser(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		var tasks []string
		for _, name := range []string{"a", "b", "c", "d"} {
			tasks = append(tasks, e.startSync(e.alice, e.addAccount(e.alice, name).ID).Task.ID)
		}
		const attempts = 200
		codes := make(chan int, attempts)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for i := range attempts {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/api/sync/tasks/"+tasks[i%len(tasks)]+"/events", nil)
				req.Header.Set("Authorization", "Bearer "+e.alice.Token)
				resp, err := e.ts.Client().Do(req)
				if err != nil {
					codes <- 0
					return
				}
				defer resp.Body.Close()
				codes <- resp.StatusCode
				if resp.StatusCode == 200 {
					<-ctx.Done() // hold the stream until the test is done counting
				}
			})
		}
		counts := map[int]int{}
		for range attempts {
			counts[<-codes]++
		}
		cancel() // ends the held streams
		wg.Wait()
		if counts[200] != 20 || counts[429] != attempts-20 {
			t.Fatalf("%d stream requests from one user: %v, want 20 × 200 and %d × 429", attempts, counts, attempts-20)
		}
	})
}

// serveWithin moves the env to a server that applies l, counting the connections it holds
// open; peak is the most it ever held at once.
func (e *env) serveWithin(l httpapi.ConnLimits) (open, peak func() int) {
	e.t.Helper()
	ts := httptest.NewUnstartedServer(e.srv.Handler())
	ts.Config = l.Server(e.srv.Handler())
	counted := &countingListener{Listener: ts.Listener}
	ts.Listener = l.Listener(counted)
	ts.Start()
	e.t.Cleanup(func() {
		e.srv.Shutdown()
		ts.Close()
	})
	e.ts = ts
	return counted.count(&counted.open), counted.count(&counted.peak)
}

// countingListener counts the connections it accepted that are not closed yet.
type countingListener struct {
	net.Listener
	mu         sync.Mutex
	open, peak int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingListener) count(v *int) func() int {
	return func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return *v
	}
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// holdIdle opens a connection, asks one request on it, and leaves it open and idle. It returns
// when the server closed it, with how long the connection was idle.
func holdIdle(addr string) (time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a connection held for good fails here
	if _, err := io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: mailsync.test\r\n\r\n"); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/livez answered %d", resp.StatusCode)
	}
	idle := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		return 0, fmt.Errorf("an idle connection read %v, want the server to close it", err)
	}
	return time.Since(idle), nil
}

// TestIdleConnectionsAreClosed: 3,000 idle keep-alive connections were once held for good. Now
// each is closed after IdleTimeout, and no more than MaxConns are open at once: the rest wait
// their turn and are answered too. (No database is involved.)
func TestIdleConnectionsAreClosed(t *testing.T) {
	e := newEnv(t, "sqlite")
	const conns, maxConns = 3000, 256
	idleTimeout := 300 * time.Millisecond
	open, peak := e.serveWithin(httpapi.ConnLimits{IdleTimeout: idleTimeout, MaxConns: maxConns})
	addr := e.ts.Listener.Addr().String()

	idles := make([]time.Duration, conns)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			d, err := holdIdle(addr)
			idles[i] = d
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	longest := slices.Max(idles)
	t.Logf("%d idle connections: each closed after at most %v idle; at most %d open at once", conns, longest.Round(time.Millisecond), peak())
	// Generous: thousands of goroutines on a loaded machine wake late. Held for good is the bug.
	if longest > 15*time.Second {
		t.Errorf("an idle connection was held %v, with an IdleTimeout of %v", longest, idleTimeout)
	}
	if p := peak(); p > maxConns {
		t.Errorf("%d connections were open at once, above the cap of %d", p, maxConns)
	}
	waitFor(t, "every connection closed", func() bool { return open() == 0 })
}

// TestSlowHeadersAreCut: a connection that never finishes its headers is closed after
// ReadHeaderTimeout.
func TestSlowHeadersAreCut(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.serveWithin(httpapi.ConnLimits{ReadHeaderTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: mailsync.test\r\nX-Slow: ")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, c) // the server answers 408 or nothing, then closes
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a connection with unfinished headers was held %v", took)
	}
}

// TestConnectionCapQueuesTheRest: past MaxConns a new connection is not served until one closes.
func TestConnectionCapQueuesTheRest(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.serveWithin(httpapi.ConnLimits{MaxConns: 2, IdleTimeout: time.Minute})
	addr := e.ts.Listener.Addr().String()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: mailsync.test\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	quick := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
	if _, err := quick.Get(e.ts.URL + "/livez"); err == nil {
		t.Fatal("a third connection was served while two held the cap of two")
	}
	held[0].Close()
	patient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	resp, err := patient.Get(e.ts.URL + "/livez")
	if err != nil {
		t.Fatalf("no connection served after one of the two closed: %v", err)
	}
	resp.Body.Close()
}

// TestEventStreamOutlivesConnectionTimeouts: the timeouts are for idle and slow clients; a
// stream that sends keepalives stays open well past both.
func TestEventStreamOutlivesConnectionTimeouts(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		e.serveWithin(httpapi.ConnLimits{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond})
		task := e.startSync(e.alice, e.addAccount(e.alice, "work").ID).Task.ID
		s := e.openStream(t, e.alice, task, "")
		s.next(t) // snapshot
		until := time.After(1500 * time.Millisecond)
		keepalives := 0
		for {
			select {
			case <-s.comments:
				keepalives++
				continue
			case <-s.done:
				t.Fatalf("the stream was closed after %d keepalives", keepalives)
			case <-until:
			}
			break
		}
		if keepalives < 3 {
			t.Fatalf("%d keepalives in 1.5 s, want several (one per 200 ms)", keepalives)
		}
	})
}

// TestMetricsAccess: /metrics can require a token, or leave the API's address for one of its own.
func TestMetricsAccess(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		t.Run("token", func(t *testing.T) {
			e := newEnv(t, dialect, func(c *instance.Config) { c.API.MetricsToken = "scrape-me" })
			e.request(user{}, "GET", "/metrics", nil).wantProblem(t, http.StatusUnauthorized)
			e.request(user{}, "GET", "/metrics", nil, "Authorization", "Bearer wrong").wantProblem(t, http.StatusUnauthorized)
			e.request(e.admin, "GET", "/metrics", nil).wantProblem(t, http.StatusUnauthorized) // a user's token is not it
			body := e.request(user{}, "GET", "/metrics", nil, "Authorization", "Bearer scrape-me").want(t, 200).body
			if !strings.Contains(string(body), "mailsync_tasks") {
				t.Fatalf("metrics with the token: %.200s", body)
			}
		})
		t.Run("elsewhere", func(t *testing.T) {
			e := newEnv(t, dialect, func(c *instance.Config) { c.API.MetricsElsewhere = true })
			if r := e.request(user{}, "GET", "/metrics", nil); r.StatusCode != http.StatusNotFound {
				t.Fatalf("/metrics on the API's address: %d, want 404", r.StatusCode)
			}
			ms := httptest.NewServer(e.srv.MetricsHandler())
			defer ms.Close()
			resp, err := http.Get(ms.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(body), "mailsync_tasks") {
				t.Fatalf("metrics on their own address: %d %.200s", resp.StatusCode, body)
			}
		})
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
