package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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

// The browser tests drive the real UI against the real API, task lifecycle and worker on a real
// database, all in this process, so that a test can reach behind the page: count the task rows,
// claim a task as a worker that then dies, hold a sync at a chosen point.

const (
	userEmail    = "ada@example.test"
	userPassword = "correct horse battery staple"
	imapPassword = "imap-secret"
)

// lifecycle is short enough that a dead worker shows within a second or two.
func lifecycle() task.Config {
	return task.Config{
		HeartbeatInterval: 100 * time.Millisecond,
		HeartbeatTimeout:  1200 * time.Millisecond,
		SelfFence:         600 * time.Millisecond,
		ReapInterval:      time.Hour, // no reaper: a dead task stays dead until Start replaces it
		QueuedTimeout:     time.Minute,
		MaxAttempts:       3,
		MaxRunTime:        time.Hour,
	}
}

// fakeLogin accepts imapPassword only, with the refusal an IMAP server gives.
type fakeLogin struct{}

func (fakeLogin) CheckLogin(_ context.Context, a store.Account, password string) error {
	if password != imapPassword {
		return errors.New("NO [AUTHENTICATIONFAILED] Authentication failed.")
	}
	return nil
}

// mailbox is the pretend IMAP account a sync copies: folder sizes, and how long each step of
// the copy takes. gate, when set, holds the sync halfway until it is closed.
type mailbox struct {
	folders []int
	step    time.Duration
	batch   int

	mu   sync.Mutex
	gate chan struct{}
	// failOnce, when set, fails the next sync halfway with this error.
	failOnce error
}

// failNext makes the next sync fail halfway with err.
func (m *mailbox) failNext(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failOnce = err
}

func (m *mailbox) total() int {
	n := 0
	for _, f := range m.folders {
		n += f
	}
	return n
}

// hold makes the next syncs stop halfway until the returned func is called.
func (m *mailbox) hold() (release func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := make(chan struct{})
	m.gate = g
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

// sync is a worker body that reports the progress a real sync of the mailbox would.
func (m *mailbox) sync(ctx context.Context, run *worker.Run) error {
	p := task.Progress{Phase: "listing folders", FoldersTotal: len(m.folders), MessagesTotal: m.total()}
	run.Report(p)
	m.mu.Lock()
	gate, fail := m.gate, m.failOnce
	m.failOnce = nil
	m.mu.Unlock()
	for i, n := range m.folders {
		p.Phase = fmt.Sprintf("fetching folder %d", i+1)
		for done := 0; done < n; {
			k := min(m.batch, n-done)
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(m.step):
			}
			done += k
			p.MessagesDone += k
			p.New += k
			p.BytesDone += int64(k) * 4096
			run.Report(p)
			if fail != nil && p.MessagesDone >= p.MessagesTotal/2 {
				return fail
			}
			if gate != nil && p.MessagesDone >= p.MessagesTotal/2 {
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-gate:
				}
				gate = nil
			}
		}
		p.FoldersDone++
		run.Report(p)
	}
	p.Phase = "done"
	run.Report(p)
	return nil
}

// stack is one mailsync server as `mailsync serve` builds it, on a loopback port.
type stack struct {
	t     *testing.T
	in    *instance.Instance
	store *store.Store
	tasks *task.Manager
	box   *secret.Box
	bus   *events.Bus
	body  worker.Body
	url   string
	user  store.User

	stopWorker func()

	// around, when set, serves every request in place of the instance (given as next): a test's
	// stand-in for a proxy that loses an answer, say.
	around atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler)]

	// breakStreams makes every task event stream fail, as a proxy that does not pass them would.
	breakStreams   atomic.Bool
	streamRequests atomic.Int64
	taskPolls      atomic.Int64 // GET /api/sync/tasks/{id}
}

// newStack starts a server whose workers run body and whose API tests IMAP logins with login.
func newStack(t *testing.T, body worker.Body, login httpapi.LoginChecker) *stack {
	t.Helper()
	return newStackWith(t, lifecycle(), body, login)
}

// newStackWith is newStack under the lifecycle c: the Instance serve builds, with test timings
// (and what tweak changes of them), served behind a mux that lets a test count or break the task
// routes.
func newStackWith(t *testing.T, c task.Config, body worker.Body, login httpapi.LoginChecker, tweak ...func(*instance.Config)) *stack {
	t.Helper()
	s := storetest.Open(t, "sqlite")
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := instance.Config{
		Store: s, Key: bytes.Repeat([]byte{3}, secret.KeySize), Lifecycle: c, Login: login, Body: body, Log: log,
		Workers: 2, WorkerPoll: 50 * time.Millisecond, ProgressEvery: 20 * time.Millisecond, ShutdownGrace: time.Second,
		NoReaper: true, SessionTTL: time.Hour,
		API: httpapi.Config{Version: "test", PasswordParams: instancetest.CheapParams,
			PollInterval: 100 * time.Millisecond, MinEventInterval: 50 * time.Millisecond},
	}
	for _, f := range tweak {
		f(&cfg)
	}
	in, err := instance.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{t: t, in: in, store: s, tasks: in.Tasks, box: in.Box, bus: in.Bus, body: body}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if f := st.around.Load(); f != nil {
			(*f)(w, r, in.Handler())
			return
		}
		in.Handler().ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /api/sync/tasks/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		st.streamRequests.Add(1)
		if st.breakStreams.Load() {
			http.Error(w, "streams are down", http.StatusBadGateway)
			return
		}
		in.Handler().ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /api/sync/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		st.taskPolls.Add(1)
		in.Handler().ServeHTTP(w, r)
	})
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.RegisterOnShutdown(in.API.Shutdown)
	ts.Start()
	t.Cleanup(func() {
		in.API.Shutdown()
		ts.Close()
	})

	hash, err := auth.HashPassword(userPassword, instancetest.CheapParams)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(context.Background(), userEmail, hash, true)
	if err != nil {
		t.Fatal(err)
	}
	st.url, st.user = ts.URL, u
	st.startWorker()
	return st
}

// startWorker runs the instance's workers until stopWorker or the end of the test, as a
// restarted process would.
func (st *stack) startWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := st.in.Run(ctx); err != nil {
			st.t.Errorf("instance: %v", err)
		}
	}()
	var once sync.Once
	st.stopWorker = func() { once.Do(func() { cancel(); <-done }) }
	st.t.Cleanup(st.stopWorker)
}

// addAccount stores an account for the fake mailbox directly, as `mailsync account add` would.
func (st *stack) addAccount(name string) store.Account {
	st.t.Helper()
	return st.addIMAPAccount(name, "127.0.0.1", 1143, "ada", imapPassword)
}

func (st *stack) addIMAPAccount(name, host string, port int, login, password string) store.Account {
	st.t.Helper()
	a := store.Account{UserID: st.user.ID, Name: name, IMAPHost: host, IMAPPort: port, TLSMode: "none", Login: login}
	a.SecretEnc = st.box.Seal([]byte(password), secret.AccountContext(a.Login, a.IMAPHost))
	out, err := st.store.CreateAccount(context.Background(), a)
	if err != nil {
		st.t.Fatal(err)
	}
	return out
}

// taskCount is how many task rows the account has, whatever their state.
func (st *stack) taskCount(accountID int64) int {
	st.t.Helper()
	var n int
	if err := st.store.DB().QueryRowContext(context.Background(),
		`SELECT count(*) FROM sync_tasks WHERE account_id = ?`, accountID).Scan(&n); err != nil {
		st.t.Fatal(err)
	}
	return n
}

func (st *stack) accounts() []store.Account {
	st.t.Helper()
	as, err := st.store.Accounts(context.Background(), st.user.ID)
	if err != nil {
		st.t.Fatal(err)
	}
	return as
}
