package syncer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsync/internal/changes"
	"mailsync/internal/changes/changestest"
	"mailsync/internal/imapconn"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// fast is a lifecycle sped up for tests.
var fast = task.Config{
	HeartbeatInterval: 100 * time.Millisecond,
	HeartbeatTimeout:  time.Second,
	SelfFence:         700 * time.Millisecond,
	ReapInterval:      200 * time.Millisecond,
	QueuedTimeout:     time.Minute,
	MaxAttempts:       1,
	MaxRunTime:        5 * time.Minute,
}

// server is where a test account lives.
type server struct {
	host          string
	port          int
	login, passwd string
	delim         string // hierarchy separator of folder names
	hasCondStore  bool
	objectID      bool // OBJECTID: every folder is selected, even unchanged ones
	describe      string
}

// env is a store, a worker running the syncer, and one account on a server.
type env struct {
	store   *store.Store
	tasks   *task.Manager
	acct    store.Account
	srv     server
	fetched atomic.Int64 // bodies downloaded, over every sync
	calls   *countingStore

	mu       sync.Mutex
	progress []task.Progress // every report of every sync, in order

	// seen is how many changes of the account's log earlier steps checked; tampered are the
	// messages the test changed or removed in the store behind the syncer's back
	// (changestest.Tampered).
	seen     int
	tampered []changestest.Tampered
	// fresh are the changes the last assertChanges checked.
	fresh []changes.Change
}

// reports returns the progress reported so far.
func (e *env) reports() []task.Progress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.progress)
}

// countingStore counts the syncer's calls that only a folder that changed should cost.
type countingStore struct {
	syncer.Store
	writes, folderReads atomic.Int64
}

func (c *countingStore) CommitBatch(ctx context.Context, l task.Lease, p task.Progress, b store.Batch) (int64, error) {
	c.writes.Add(1)
	return c.Store.CommitBatch(ctx, l, p, b)
}

func (c *countingStore) DeleteFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, name string) error {
	c.writes.Add(1)
	return c.Store.DeleteFolder(ctx, l, p, accountID, name)
}

func (c *countingStore) RenameFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, from, to string) error {
	c.writes.Add(1)
	return c.Store.RenameFolder(ctx, l, p, accountID, from, to)
}

func (c *countingStore) FolderUIDs(ctx context.Context, folderID int64) ([]store.FlagChange, error) {
	c.folderReads.Add(1)
	return c.Store.FolderUIDs(ctx, folderID)
}

func newEnv(t testing.TB, dialect string, srv server, opts syncer.Options) *env {
	t.Helper()
	e, key := newAccount(t, storetest.DSN(t, dialect), srv)
	e.startWorker(t, key, opts)
	return e
}

// newAccount makes a store with one account on srv and returns it with the server key its
// password is sealed under. No worker runs yet.
func newAccount(t testing.TB, dsn string, srv server) (*env, []byte) {
	t.Helper()
	ctx := context.Background()
	st := storetest.OpenDSN(t, dsn, true)
	tasks, err := task.NewManager(st, fast)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box := newBox(t, key)
	u, err := st.CreateUser(ctx, rand.Text()+"@example.test", "x", false)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.CreateAccount(ctx, store.Account{
		UserID: u.ID, Name: "test", IMAPHost: srv.host, IMAPPort: srv.port, TLSMode: "none",
		Login: srv.login, SecretEnc: box.Seal([]byte(srv.passwd), secret.AccountContext(srv.login, srv.host)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: st, tasks: tasks, acct: acct, srv: srv}, key
}

// startWorker runs a worker with the syncer in this process until the test ends.
func (e *env) startWorker(t testing.TB, key []byte, opts syncer.Options) {
	t.Helper()
	user := opts.Fetched
	opts.Fetched = func(folder string, uid uint32) {
		e.fetched.Add(1)
		if user != nil {
			user(folder, uid)
		}
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 20 * time.Second
	}
	e.calls = &countingStore{Store: e.store}
	s := syncer.New(e.calls, newBox(t, key), opts)
	w := worker.New(e.tasks, s.Run, worker.Config{Concurrency: 1, PollInterval: 10 * time.Millisecond,
		ProgressEvery: time.Nanosecond, Changed: func(tk task.Task) {
			e.mu.Lock()
			e.progress = append(e.progress, tk.Progress)
			e.mu.Unlock()
		}})
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(wctx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

func newBox(t testing.TB, key []byte) *secret.Box {
	t.Helper()
	box, err := secret.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// sync runs one sync task to its end and returns the final row.
func (e *env) sync(t testing.TB, force bool) task.Task {
	t.Helper()
	ctx := context.Background()
	tk, _, err := e.tasks.Start(ctx, e.acct.ID, force)
	if err != nil {
		t.Fatal(err)
	}
	return e.wait(t, tk.ID)
}

func (e *env) wait(t testing.TB, id string) task.Task {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		tk, err := e.tasks.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !tk.State.Active() {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after 3 minutes (phase %q)", id, tk.State, tk.Progress.Phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncOK runs a sync that must succeed.
func (e *env) syncOK(t testing.TB, force bool) task.Task {
	t.Helper()
	tk := e.sync(t, force)
	if tk.State != task.Succeeded {
		t.Fatalf("sync %s: %s: %s", tk.ID, tk.State, tk.Error)
	}
	return tk
}

// serverMessage is one message as the server has it.
type serverMessage struct {
	UID   uint32
	Flags []string
	Size  int64
	Raw   []byte
}

// eachFolder logs in to srv over a fresh connection and calls fn with each selectable folder,
// selected.
func eachFolder(tb testing.TB, srv server, fn func(c *imapconn.Conn, f imapconn.Folder) error) {
	tb.Helper()
	ctx := context.Background()
	c, err := imapconn.Dial(ctx, imapconn.Config{Host: srv.host, Port: srv.port, TLS: imapconn.TLSNone,
		Login: srv.login, Password: srv.passwd})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	folders, err := c.ListFolders(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range folders {
		if f.NoSelect {
			continue
		}
		if _, err := c.Select(ctx, f.Name, false); err != nil {
			tb.Fatal(err)
		}
		if err := fn(c, f); err != nil {
			tb.Fatal(err)
		}
	}
}

// serverState reads every selectable folder of the account, with every message.
func (e *env) serverState(t *testing.T) map[string][]serverMessage {
	t.Helper()
	out := map[string][]serverMessage{}
	eachFolder(t, e.srv, func(c *imapconn.Conn, f imapconn.Folder) error {
		out[f.Name] = []serverMessage{} // an empty folder is there, with nothing in it
		return c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(m imapconn.Message) error {
			out[f.Name] = append(out[f.Name], serverMessage{UID: m.UID, Flags: sorted(m.Flags), Size: m.Size, Raw: m.Raw})
			return nil
		})
	})
	return out
}

// storeState reads the account's copy in the same shape.
func (e *env) storeState(t *testing.T) map[string][]serverMessage {
	t.Helper()
	ctx := context.Background()
	folders, err := e.store.Folders(ctx, e.acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]serverMessage{}
	for _, f := range folders {
		msgs, err := e.store.FolderMessages(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		list := []serverMessage{}
		for _, m := range msgs {
			list = append(list, serverMessage{UID: m.UID, Flags: sorted(m.Flags), Size: m.Size, Raw: m.Raw})
		}
		out[f.Name] = list
	}
	return out
}

// assertMirrors fails the test unless the store equals the server, folder by folder: names,
// UIDs, flags, sizes and bytes.
func (e *env) assertMirrors(t *testing.T) {
	t.Helper()
	want, got := e.serverState(t), e.storeState(t)
	if diff := compareStates(want, got); diff != "" {
		t.Fatalf("store differs from server:\n%s", diff)
	}
}

func compareStates(want, got map[string][]serverMessage) string {
	var b strings.Builder
	for name := range want {
		if _, ok := got[name]; !ok {
			fmt.Fprintf(&b, "folder %q missing from the store\n", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			fmt.Fprintf(&b, "folder %q in the store but not on the server\n", name)
		}
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			continue
		}
		if len(w) != len(g) {
			fmt.Fprintf(&b, "folder %q: server has %d messages (UIDs %v), store %d (UIDs %v)\n", name, len(w), uidsOf(w), len(g), uidsOf(g))
			continue
		}
		for i := range w {
			switch {
			case w[i].UID != g[i].UID:
				fmt.Fprintf(&b, "folder %q: message %d: UID %d on the server, %d in the store\n", name, i, w[i].UID, g[i].UID)
			case !slices.Equal(w[i].Flags, g[i].Flags):
				fmt.Fprintf(&b, "folder %q: UID %d: flags %v on the server, %v in the store\n", name, w[i].UID, w[i].Flags, g[i].Flags)
			case w[i].Size != g[i].Size:
				fmt.Fprintf(&b, "folder %q: UID %d: size %d on the server, %d in the store\n", name, w[i].UID, w[i].Size, g[i].Size)
			case !bytes.Equal(w[i].Raw, g[i].Raw):
				fmt.Fprintf(&b, "folder %q: UID %d: raw bytes differ\n", name, w[i].UID)
			}
		}
	}
	return b.String()
}

func uidsOf(msgs []serverMessage) []uint32 {
	out := make([]uint32, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

func sorted(flags []string) []string {
	out := slices.Clone(flags)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// assertChanges replays the account's change log from the start and fails the test unless it
// equals the store (changestest.Check), and checks that the changes since the last call say what
// the sync tk did: its counters' worth of message.created (at most that under force_full),
// message.updated and message.deleted, and its own sync.succeeded last. It returns those new changes.
func (e *env) assertChanges(t *testing.T, tk task.Task) []changes.Change {
	t.Helper()
	log := changestest.Check(t, e.store, e.acct.ID, e.tampered...)
	fresh := log[e.seen:]
	e.seen, e.fresh = len(log), fresh
	count := map[changes.Kind]int{}
	for _, c := range fresh {
		count[c.Kind]++
	}
	p := tk.Progress
	// A force_full sync that downloads a damaged row again counts it new but changes nothing
	// for a reader (the message is the one it was told of): there, at most New are created.
	created := count[changes.MessageCreated] == p.New || tk.ForceFull && count[changes.MessageCreated] < p.New
	if !created || count[changes.MessageUpdated] != p.Updated || count[changes.MessageDeleted] != p.Deleted {
		t.Errorf("changes of task %s: %d created, %d updated, %d deleted; its counters say %d/%d/%d",
			tk.ID, count[changes.MessageCreated], count[changes.MessageUpdated], count[changes.MessageDeleted], p.New, p.Updated, p.Deleted)
	}
	if n := len(fresh); n == 0 || fresh[n-1].Kind != changes.SyncSucceeded || fresh[n-1].TaskID != tk.ID || count[changes.SyncSucceeded] != 1 {
		t.Errorf("changes of task %s do not end with its one sync.succeeded: %v", tk.ID, kinds(fresh))
	}
	return fresh
}

// assertFolderChanges fails the test unless the folder changes of the last step are want
// ("kind folder", in order).
func (e *env) assertFolderChanges(t *testing.T, step string, want ...string) {
	t.Helper()
	var got []string
	for _, c := range e.fresh {
		if strings.HasPrefix(string(c.Kind), "folder.") {
			got = append(got, fmt.Sprintf("%s %s", c.Kind, c.Folder))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: folder changes %q, want %q", step, got, want)
	}
}

// kinds lists changes as "kind folder uid", for messages.
func kinds(cs []changes.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s %q %d", c.Kind, c.Folder, c.UID)
	}
	return out
}

// storedCount is how many messages the store holds for the account.
func (e *env) storedCount(t *testing.T) int {
	t.Helper()
	n := 0
	for _, msgs := range e.storeState(t) {
		n += len(msgs)
	}
	return n
}
