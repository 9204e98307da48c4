package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/events"
	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// imapPassword is the one password the fake IMAP server accepts. No response, log line or
// database byte may ever contain it.
const imapPassword = "IMAP-pa55word-that-must-never-leak"

// fakeLogin accepts imapPassword only. Its refusal quotes the password it was given, as a careless
// IMAP library might, so the tests see that the API scrubs it.
type fakeLogin struct{}

func (fakeLogin) CheckLogin(_ context.Context, a store.Account, password string) error {
	if password != imapPassword {
		return fmt.Errorf("LOGIN %s %s: NO [AUTHENTICATIONFAILED] invalid credentials", a.Login, password)
	}
	return nil
}

// testTaskConfig is a lifecycle in milliseconds: dead after 600 ms of silence.
func testTaskConfig() task.Config { return instancetest.Lifecycle() }

// cheapParams keep password hashing fast in tests; the code path is the real one.
var cheapParams = instancetest.CheapParams

// user is a test user and their API token.
type user struct {
	store.User
	Token    string
	Password string
}

// env is one Instance, as `mailsync serve` builds it, on a real database behind a real loopback
// HTTP server. It runs no worker, reaper or scheduler: a test that wants one starts it.
type env struct {
	t       testing.TB
	dialect string
	in      *instance.Instance
	store   *store.Store
	tasks   *task.Manager
	bus     *events.Bus
	srv     *httpapi.Server
	ts      *httptest.Server
	logs    *instancetest.LogBuffer
	box     *secret.Box

	admin, alice, bob user
}

// newEnv builds the Instance with the test lifecycle, cheap password hashing, fakeLogin and
// SSE timings in milliseconds; each tweak may change its Config (the API's settings are in
// Config.API) before it is built.
func newEnv(tb testing.TB, dialect string, tweak ...func(*instance.Config)) *env {
	tb.Helper()
	dsn := storetest.DSN(tb, dialect)
	s := storetest.OpenDSN(tb, dsn, true)
	logs := &instancetest.LogBuffer{}
	cfg := instance.Config{
		Store: s, DSN: dsn, Key: instancetest.Key(), Lifecycle: testTaskConfig(), Login: fakeLogin{},
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NoReaper: true, SessionTTL: time.Hour,
		API: httpapi.Config{
			Version: "test", DataDir: tb.TempDir(), PasswordParams: cheapParams,
			KeepAlive: 200 * time.Millisecond, PollInterval: 100 * time.Millisecond, MinEventInterval: 20 * time.Millisecond,
			LoginGuard: auth.NewLoginGuard(auth.LoginPolicy{PerAddress: auth.Rate{Burst: 5, Every: time.Minute},
				PerAddressEmail: auth.Rate{Burst: 5, Every: time.Minute}}),
		},
	}
	for _, f := range tweak {
		f(&cfg)
	}
	in, err := instance.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(in.Handler())
	ts.Config.RegisterOnShutdown(in.API.Shutdown)
	ts.Start()
	tb.Cleanup(func() {
		in.API.Shutdown()
		ts.Close()
	})
	e := &env{t: tb, dialect: dialect, in: in, store: in.Store, tasks: in.Tasks, bus: in.Bus, srv: in.API, ts: ts, logs: logs, box: in.Box}
	e.admin = e.newUser("admin@example.test", true)
	e.alice = e.newUser("alice@example.test", false)
	e.bob = e.newUser("bob@example.test", false)
	return e
}

// withBody makes the Instance's workers run body, polling every 10 ms, once the test calls
// runWorkers.
func withBody(c *instance.Config, body worker.Body) {
	c.Body, c.WorkerPoll = body, 10*time.Millisecond
}

// runWorkers runs the Instance as serve does, with the workers of the body withBody set and no
// reaper, until the returned stop or the test's end.
func (e *env) runWorkers(t testing.TB) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.in.Run(ctx); err != nil {
			t.Errorf("instance: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// boxOf is the secret box the Instance built from c will have, for what a tweak builds before
// it (a syncer): a box is a function of its key alone.
func boxOf(tb testing.TB, c *instance.Config) *secret.Box {
	tb.Helper()
	box, err := secret.New(c.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

func (e *env) newUser(email string, isAdmin bool) user {
	e.t.Helper()
	pw := "pw-of-" + email
	hash, err := auth.HashPassword(pw, cheapParams)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.store.CreateUser(context.Background(), email, hash, isAdmin)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, tokHash := auth.NewToken()
	if _, err := e.store.CreateToken(context.Background(), u.ID, tokHash, "test"); err != nil {
		e.t.Fatal(err)
	}
	return user{User: u, Token: tok, Password: pw}
}

// response is an answer the test has read whole.
type response struct {
	*http.Response
	body []byte
}

func (r response) json(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("%s %s: %d %q is not the JSON expected: %v", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.body, err)
	}
}

// request sends a request as u (no credentials for the zero user). body is JSON-encoded unless
// it is a string, which is sent as it is.
func (e *env) request(u user, method, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.ts.Client().Do(req)
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

// want checks the status of r.
func (r response) want(tb testing.TB, status int) response {
	tb.Helper()
	if r.StatusCode != status {
		tb.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL, r.StatusCode, status, r.body)
	}
	return r
}

// wantProblem checks that r is an RFC 9457 problem with the status.
func (r response) wantProblem(tb testing.TB, status int) {
	tb.Helper()
	r.want(tb, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		tb.Fatalf("%s %s: %d with Content-Type %q, want application/problem+json; body %s", r.Request.Method, r.Request.URL, status, ct, r.body)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	r.json(tb, &p)
	if p.Status != status || p.Title == "" {
		tb.Fatalf("%s %s: problem %s lacks its status or title", r.Request.Method, r.Request.URL, r.body)
	}
}

// addAccount adds an account for u through the API and returns it.
func (e *env) addAccount(u user, name string) httpapi.AccountJSON {
	e.t.Helper()
	var a httpapi.AccountJSON
	e.request(u, "POST", "/api/accounts", map[string]any{
		"name": name, "imap_host": "127.0.0.1", "imap_port": 1143, "tls_mode": "none",
		"login": "bob", "password": imapPassword,
	}).want(e.t, 201).json(e.t, &a)
	return a
}

type startResult struct {
	Task   httpapi.TaskJSON `json:"task"`
	Reused bool             `json:"reused"`
}

func (e *env) startSync(u user, accountID int64) startResult {
	e.t.Helper()
	var r startResult
	e.request(u, "POST", fmt.Sprintf("/api/accounts/%d/sync", accountID), map[string]any{}).want(e.t, 202).json(e.t, &r)
	return r
}

func readAll(resp *http.Response) ([]byte, error) { return io.ReadAll(resp.Body) }
