package imapconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/memimap"
)

// server is what the tests need of a test IMAP server.
type server interface {
	Host() string
	Port() int
}

func config(s server, u imaptest.User) imapconn.Config {
	return imapconn.Config{
		Host: s.Host(), Port: s.Port(), TLS: imapconn.TLSNone,
		Login: u.Login, Password: u.Password,
		DialTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second,
	}
}

func dial(t testing.TB, cfg imapconn.Config) *imapconn.Conn {
	t.Helper()
	c, err := imapconn.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// message returns a distinct message; big ones carry 8-bit and long lines to catch any
// re-encoding.
func message(i, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Zoë <z@example.org>\r\nTo: b@example.org\r\nSubject: message %d\r\n", i)
	fmt.Fprintf(&b, "Message-ID: <%d@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n", i)
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	line := fmt.Sprintf("ligne %d — données, ünïcödé. ", i)
	for b.Len() < bodySize {
		b.WriteString(line)
		if b.Len()%900 < len(line) {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func TestDialDovecot(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "s3cret")

	var logs bytes.Buffer
	cfg := config(d, u)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := dial(t, cfg)

	caps := c.Caps()
	if !caps.CondStore || !caps.ListStatus || !caps.ESearch || !caps.Idle {
		t.Errorf("caps = %+v, want CONDSTORE, LIST-STATUS, ESEARCH and IDLE from Dovecot", caps)
	}
	if !strings.Contains(logs.String(), "imap connected") {
		t.Errorf("no debug record of the connection in %q", logs.String())
	}
	if strings.Contains(logs.String(), u.Password) {
		t.Errorf("the password appears in the log: %q", logs.String())
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.ListFolders(context.Background()); imapconn.Classify(err) != imapconn.ClassTransient {
		t.Errorf("ListFolders after Close: %v, want a transient error", err)
	}
}

func TestDialErrors(t *testing.T) {
	d := imaptest.StartDovecot(t)
	du := d.AddUser(t, "bob", "right")
	m := imaptest.StartMemServer(t)
	mu, err := m.AddUser("bob", "right")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}()

	tests := []struct {
		name      string
		cfg       imapconn.Config
		class     imapconn.Class
		sentinel  error
		wantInMsg string
	}{
		{
			name:      "dovecot wrong password",
			cfg:       func() imapconn.Config { c := config(d, du); c.Password = "wrong"; return c }(),
			class:     imapconn.ClassAuth,
			sentinel:  imapconn.ErrAuth,
			wantInMsg: fmt.Sprintf("imap: login to %s as bob: authentication failed", d.Addr()),
		},
		{
			name:      "dovecot unknown user",
			cfg:       func() imapconn.Config { c := config(d, du); c.Login = "nobody"; return c }(),
			class:     imapconn.ClassAuth,
			sentinel:  imapconn.ErrAuth,
			wantInMsg: "as nobody: authentication failed",
		},
		{
			name:      "memserver wrong password",
			cfg:       func() imapconn.Config { c := config(m, mu); c.Password = "wrong"; return c }(),
			class:     imapconn.ClassAuth,
			sentinel:  imapconn.ErrAuth,
			wantInMsg: "authentication failed",
		},
		{
			name: "unreachable port",
			cfg: imapconn.Config{Host: "127.0.0.1", Port: closedPort, TLS: imapconn.TLSNone,
				Login: "bob", Password: "right"},
			class:     imapconn.ClassTransient,
			sentinel:  imapconn.ErrTransient,
			wantInMsg: fmt.Sprintf("connect to 127.0.0.1:%d", closedPort),
		},
		{
			name:      "implicit TLS against a plain port",
			cfg:       func() imapconn.Config { c := config(d, du); c.TLS = imapconn.TLSImplicit; return c }(),
			class:     imapconn.ClassPermanent,
			sentinel:  imapconn.ErrPermanent,
			wantInMsg: "does not speak TLS on this port",
		},
		{
			name:      "STARTTLS against a server without TLS",
			cfg:       func() imapconn.Config { c := config(d, du); c.TLS = imapconn.TLSStartTLS; return c }(),
			class:     imapconn.ClassPermanent,
			sentinel:  imapconn.ErrPermanent,
			wantInMsg: fmt.Sprintf("STARTTLS with %s: server said", d.Addr()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := imapconn.Dial(context.Background(), tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			t.Log(err)
			if got := imapconn.Classify(err); got != tt.class {
				t.Errorf("Classify = %q, want %q (err: %v)", got, tt.class, err)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(err, %v) = false (err: %v)", tt.sentinel, err)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantInMsg)
			}
			if strings.Contains(err.Error(), tt.cfg.Password) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// silentServer accepts connections and, if greet, sends a greeting; then it never answers.
func silentServer(t *testing.T, greet bool) (host string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if greet {
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1] silent server ready\r\n"))
			}
		}
	})
	addr := ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", addr.Port
}

func TestDialTimeoutsAndCancel(t *testing.T) {
	tests := []struct {
		name    string
		greet   bool
		cancel  bool
		wantErr error
	}{
		{name: "no greeting", greet: false, wantErr: imapconn.ErrTransient},
		{name: "no answer to LOGIN", greet: true, wantErr: imapconn.ErrTransient},
		{name: "cancelled during LOGIN", greet: true, cancel: true, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, port := silentServer(t, tt.greet)
			cfg := imapconn.Config{Host: host, Port: port, TLS: imapconn.TLSNone, Login: "u", Password: "p",
				DialTimeout: 300 * time.Millisecond, CommandTimeout: 300 * time.Millisecond}
			ctx := context.Background()
			if tt.cancel {
				cfg.CommandTimeout = time.Minute
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			start := time.Now()
			c, err := imapconn.Dial(ctx, cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded against a silent server")
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("Dial took %v to give up", elapsed)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if imapconn.Classify(err) != imapconn.ClassTransient {
				t.Errorf("Classify = %q, want transient", imapconn.Classify(err))
			}
		})
	}
}

func folderNames(fs []imapconn.Folder) []string {
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

func findFolder(t *testing.T, fs []imapconn.Folder, name string) imapconn.Folder {
	t.Helper()
	for _, f := range fs {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no folder %q among %q", name, folderNames(fs))
	return imapconn.Folder{}
}

func TestListFoldersDovecot(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	admin := d.Client(t, u)
	admin.CreateFolder("Données")
	admin.CreateFolder("Archive.2024")
	admin.CreateFolder("A&B 日本語")
	for i := range 3 {
		admin.AddMessage("Données", message(i, 100))
	}

	c := dial(t, config(d, u))
	folders, err := c.ListFolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A&B 日本語", "Archive", "Archive.2024", "Données", "INBOX"}
	if got := folderNames(folders); !slices.Equal(got, want) {
		t.Fatalf("folders = %q, want %q", got, want)
	}
	f := findFolder(t, folders, "Données")
	if f.Delimiter != '.' || f.NoSelect {
		t.Errorf("Données: delimiter %q, NoSelect %v", f.Delimiter, f.NoSelect)
	}
	if f.Status.Messages != 3 || f.Status.UIDNext != 4 || f.Status.UIDValidity == 0 || f.Status.HighestModSeq == 0 {
		t.Errorf("Données status = %+v, want 3 messages, UIDNEXT 4, a UIDVALIDITY and a HIGHESTMODSEQ", f.Status)
	}
	st, err := c.Status(context.Background(), "Données")
	if err != nil {
		t.Fatal(err)
	}
	if st != f.Status {
		t.Errorf("Status = %+v, LIST-STATUS said %+v", st, f.Status)
	}
	// The name goes back to the server unchanged.
	sel, err := c.Select(context.Background(), "A&B 日本語", true)
	if err != nil {
		t.Fatal(err)
	}
	if sel.UIDValidity != findFolder(t, folders, "A&B 日本語").Status.UIDValidity {
		t.Errorf("select status %+v disagrees with LIST-STATUS", sel)
	}
}

func TestListFoldersMemServer(t *testing.T) {
	// The in-memory server has no LIST-STATUS: this covers LIST followed by pipelined STATUS.
	m := imaptest.StartMemServer(t)
	u, err := m.AddUser("carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Données", "Work/Projets", "Empty"} {
		if err := m.CreateFolder(u.Login, name); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, err := m.Append(u.Login, "Work/Projets", message(i, 200), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, config(m, u))
	if c.Caps().ListStatus || c.Caps().CondStore {
		t.Fatalf("caps = %+v: the in-memory server should have neither LIST-STATUS nor CONDSTORE", c.Caps())
	}
	folders, err := c.ListFolders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Données", "Empty", "INBOX", "Work/Projets"}
	if got := folderNames(folders); !slices.Equal(got, want) {
		t.Fatalf("folders = %q, want %q", got, want)
	}
	f := findFolder(t, folders, "Work/Projets")
	if f.Status.Messages != 5 || f.Status.UIDNext != 6 || f.Status.UIDValidity == 0 || f.Status.HighestModSeq != 0 {
		t.Errorf("status = %+v, want 5 messages, UIDNEXT 6, a UIDVALIDITY, no HIGHESTMODSEQ", f.Status)
	}
	if f.Delimiter != '/' {
		t.Errorf("delimiter = %q, want /", f.Delimiter)
	}
	if st := findFolder(t, folders, "Données").Status; st.UIDValidity == 0 || st.Messages != 0 {
		t.Errorf("Données status = %+v", st)
	}
}

func TestSelectMissingFolder(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	c := dial(t, config(d, u))
	_, err := c.Select(context.Background(), "Nope", false)
	if !errors.Is(err, imapconn.ErrPermanent) || !strings.Contains(err.Error(), `select "Nope"`) {
		t.Fatalf("err = %v, want a permanent error naming the folder", err)
	}
	// A NO leaves the connection usable.
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatalf("select INBOX after a NO: %v", err)
	}
}

func fetchAll(t *testing.T, c *imapconn.Conn, set imapconn.UIDSet) map[uint32]imapconn.Message {
	t.Helper()
	out := map[uint32]imapconn.Message{}
	err := c.FetchBodies(context.Background(), set, func(m imapconn.Message) error {
		if _, dup := out[m.UID]; dup {
			t.Errorf("UID %d delivered twice", m.UID)
		}
		out[m.UID] = m
		return nil
	})
	if err != nil {
		t.Fatalf("FetchBodies(%s): %v", set, err)
	}
	return out
}

// testFetchBodies checks the bytes, flags, sizes and dates of appended messages on any server.
func testFetchBodies(t *testing.T, admin *imaptest.Client, cfg imapconn.Config) {
	date := time.Date(2023, 11, 5, 14, 30, 0, 0, time.FixedZone("", 3600))
	sizes := []int{10, 4 << 10, 1 << 20, 100, 64 << 10}
	want := map[uint32][]byte{}
	flags := map[uint32][]string{}
	for i, size := range sizes {
		raw := message(i, size)
		var fl []string
		if i%2 == 0 {
			fl = []string{`\Seen`, "$label1"} // the in-memory server lowercases keywords
		}
		uid := admin.AddMessageAt("INBOX", raw, date, fl...)
		want[uid], flags[uid] = raw, fl
	}

	c := dial(t, cfg)
	st, err := c.Select(context.Background(), "INBOX", c.Caps().CondStore)
	if err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, c, imapconn.UIDsFrom(1))
	if len(got) != len(want) {
		t.Fatalf("fetched %d messages, want %d", len(got), len(want))
	}
	for uid, raw := range want {
		m := got[uid]
		if !bytes.Equal(m.Raw, raw) {
			t.Errorf("UID %d: body differs (%d bytes, want %d)", uid, len(m.Raw), len(raw))
		}
		if m.Size != int64(len(raw)) {
			t.Errorf("UID %d: size %d, want %d", uid, m.Size, len(raw))
		}
		if !m.InternalDate.Equal(date) {
			t.Errorf("UID %d: internal date %v, want %v", uid, m.InternalDate, date)
		}
		gotFlags := slices.Clone(m.Flags)
		slices.Sort(gotFlags)
		wantFlags := slices.Clone(flags[uid])
		slices.Sort(wantFlags)
		if !slices.Equal(gotFlags, wantFlags) {
			t.Errorf("UID %d: flags %q, want %q", uid, m.Flags, wantFlags)
		}
		if c.Caps().CondStore && m.ModSeq == 0 {
			t.Errorf("UID %d: no MODSEQ from a CONDSTORE server", uid)
		}
	}

	// Nothing new: "UIDNEXT:*" must not return the last message.
	if extra := fetchAll(t, c, imapconn.UIDsFrom(st.UIDNext)); len(extra) != 0 {
		t.Errorf("fetch %d:* returned %d messages, want none", st.UIDNext, len(extra))
	}
	// A sparse set returns exactly its members.
	uids, err := c.SearchAllUIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != len(want) || !slices.IsSorted(uids) {
		t.Fatalf("SearchAllUIDs = %v", uids)
	}
	sub := imapconn.UIDs(uids[0], uids[2], uids[4])
	if got := fetchAll(t, c, sub); len(got) != 3 {
		t.Errorf("fetch %s returned %d messages, want 3", sub, len(got))
	}
}

func TestFetchBodiesDovecot(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	testFetchBodies(t, d.Client(t, u), config(d, u))
}

func TestFetchBodiesMemServer(t *testing.T) {
	m := imaptest.StartMemServer(t)
	u, err := m.AddUser("carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	testFetchBodies(t, imaptest.DialClient(t, m.Addr(), u), config(m, u))
}

func TestSearchAfterExpunge(t *testing.T) {
	for _, name := range []string{"dovecot", "memserver"} {
		t.Run(name, func(t *testing.T) {
			var admin *imaptest.Client
			var cfg imapconn.Config
			if name == "dovecot" {
				d := imaptest.StartDovecot(t)
				u := d.AddUser(t, "alice", "pw")
				admin, cfg = d.Client(t, u), config(d, u)
			} else {
				m := imaptest.StartMemServer(t)
				u, _ := m.AddUser("alice", "pw")
				admin, cfg = imaptest.DialClient(t, m.Addr(), u), config(m, u)
			}
			var uids []uint32
			for i := range 10 {
				uids = append(uids, admin.AddMessage("INBOX", message(i, 50)))
			}
			admin.Expunge("INBOX", uids[2], uids[3], uids[7])
			want := slices.Concat(uids[:2], uids[4:7], uids[8:])

			c := dial(t, cfg)
			if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
				t.Fatal(err)
			}
			got, err := c.SearchAllUIDs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("SearchAllUIDs = %v, want %v", got, want)
			}
		})
	}
}

func TestFetchFlagsChangedSince(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	admin := d.Client(t, u)
	var uids []uint32
	for i := range 6 {
		uids = append(uids, admin.AddMessage("INBOX", message(i, 50), `\Seen`))
	}

	c := dial(t, config(d, u))
	ctx := context.Background()
	before, err := c.Select(ctx, "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	all, err := c.FetchFlags(ctx, imapconn.UIDsFrom(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 || !slices.Equal(all[0].Flags, []string{`\Seen`}) || all[0].ModSeq == 0 {
		t.Fatalf("FetchFlags = %+v, want 6 messages seen with a MODSEQ", all)
	}

	admin.SetFlags("INBOX", uids[1], `\Flagged`)
	admin.SetFlags("INBOX", uids[4], `\Seen`, `\Answered`, "$Work")

	// A new connection sees the new HIGHESTMODSEQ; the old checkpoint finds exactly the changes.
	c2 := dial(t, config(d, u))
	after, err := c2.Select(ctx, "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	if after.HighestModSeq <= before.HighestModSeq {
		t.Fatalf("HIGHESTMODSEQ %d -> %d, want it to grow", before.HighestModSeq, after.HighestModSeq)
	}
	changed, err := c2.FetchFlags(ctx, imapconn.UIDsFrom(1), before.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 || changed[0].UID != uids[1] || changed[1].UID != uids[4] {
		t.Fatalf("changed since %d = %+v, want UIDs %d and %d", before.HighestModSeq, changed, uids[1], uids[4])
	}
	got := slices.Clone(changed[1].Flags)
	slices.Sort(got)
	if want := []string{"$Work", `\Answered`, `\Seen`}; !slices.Equal(got, want) {
		t.Errorf("flags = %q, want %q", got, want)
	}
	if changed[0].ModSeq <= before.HighestModSeq {
		t.Errorf("MODSEQ %d not above the checkpoint %d", changed[0].ModSeq, before.HighestModSeq)
	}
	none, err := c2.FetchFlags(ctx, imapconn.UIDsFrom(1), after.HighestModSeq)
	if err != nil || len(none) != 0 {
		t.Errorf("changed since HIGHESTMODSEQ = %+v, %v; want nothing", none, err)
	}
}

// bigMailbox writes n messages of about size bytes straight into alice's INBOX.
func bigMailbox(t testing.TB, n, size int) (*imaptest.Dovecot, imaptest.User) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	d.WriteMaildir(t, u, func(yield func(imaptest.MailFile) bool) {
		for i := range n {
			if !yield(imaptest.MailFile{Flags: "S", Raw: message(i, size)}) {
				return
			}
		}
	})
	return d, u
}

func TestFetchCancelMidway(t *testing.T) {
	d, u := bigMailbox(t, 300, 64<<10) // ~20 MB
	c := dial(t, config(d, u))
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n int
	var cancelledAt time.Time
	err := c.FetchBodies(ctx, imapconn.UIDsFrom(1), func(m imapconn.Message) error {
		n++
		if n == 5 {
			cancelledAt = time.Now()
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v after %d messages, want context.Canceled", err, n)
	}
	if took := time.Since(cancelledAt); took > time.Second {
		t.Errorf("FetchBodies returned %v after the cancel", took)
	}
	if n >= 300 {
		t.Errorf("all %d messages delivered despite the cancel", n)
	}
	if _, err := c.SearchAllUIDs(context.Background()); !errors.Is(err, imapconn.ErrTransient) {
		t.Errorf("command after cancel: %v, want a transient error (the connection is closed)", err)
	}
}

func TestFetchCallbackErrorStops(t *testing.T) {
	d, u := bigMailbox(t, 50, 1<<10)
	c := dial(t, config(d, u))
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	n := 0
	err := c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(imapconn.Message) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d calls, want the callback's error after 1", err, n)
	}
}

func TestServerKilledMidFetch(t *testing.T) {
	d, u := bigMailbox(t, 300, 64<<10)
	c := dial(t, config(d, u))
	if _, err := c.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(imapconn.Message) error {
		n++
		if n == 3 {
			d.Stop()
		}
		return nil
	})
	if !errors.Is(err, imapconn.ErrTransient) {
		t.Fatalf("err = %v after %d messages, want a transient error", err, n)
	}
	// The server comes back; a new connection resumes.
	d.Start(t)
	c2 := dial(t, config(d, u))
	if st, err := c2.Select(context.Background(), "INBOX", false); err != nil || st.Messages != 300 {
		t.Fatalf("after restart: %+v, %v", st, err)
	}
}

// stallLog records what a Conn reports through Config.Stalled.
type stallLog struct {
	mu      sync.Mutex
	reports []time.Time
}

func (l *stallLog) stalled(since time.Time) {
	l.mu.Lock()
	l.reports = append(l.reports, since)
	l.mu.Unlock()
}

func (l *stallLog) take() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reports
	l.reports = nil
	return out
}

// A server that stops answering is reported as stalled once the stall threshold passes, and the
// command ends at the command timeout with the stall reported over; a slow consumer is neither.
func TestCommandTimeout(t *testing.T) {
	d, u := bigMailbox(t, 20, 1<<10)
	cfg := config(d, u)
	cfg.CommandTimeout = 300 * time.Millisecond
	cfg.StallAfter = 100 * time.Millisecond
	var stalls stallLog
	cfg.Stalled = stalls.stalled
	c := dial(t, cfg)
	ctx := context.Background()
	if _, err := c.Select(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	// A slow callback is not the server's silence: it must neither trip the watchdog nor be
	// reported as a stall. (The server itself may be slow to answer on a loaded machine: what it
	// reported before each callback does not count.)
	n := 0
	err := c.FetchBodies(ctx, imapconn.UIDs(1, 2), func(imapconn.Message) error {
		n++
		stalls.take()
		time.Sleep(400 * time.Millisecond)
		if got := stalls.take(); len(got) != 0 {
			t.Errorf("a slow callback was reported as a stalled server: %v", got)
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("slow callback: %v after %d messages", err, n)
	}
	stalls.take()

	d.Pause(t)
	defer d.Resume(t)
	start := time.Now()
	_, err = c.FetchFlags(ctx, imapconn.UIDsFrom(1), 0)
	took := time.Since(start)
	if !errors.Is(err, imapconn.ErrTransient) || !strings.Contains(err.Error(), "no progress within 300ms") {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if took < cfg.CommandTimeout || took > 2*time.Second {
		t.Errorf("took %v to time out, want the command timeout %v", took, cfg.CommandTimeout)
	}
	got := stalls.take()
	if len(got) != 2 || got[0].IsZero() || !got[1].IsZero() {
		t.Fatalf("stall reports %v, want the start of the silence then its end", got)
	}
	if d := got[0].Sub(start); d < 0 || d > 250*time.Millisecond {
		t.Errorf("the silence was reported to start %v after the command, want at its start", d)
	}
}

func TestTLSModes(t *testing.T) {
	serverTLS, _, err := imaptest.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	plain := memimap.New(memimap.WithTLS(serverTLS))
	implicit := memimap.New(memimap.WithTLS(serverTLS))
	for _, s := range []*memimap.Server{plain, implicit} {
		t.Cleanup(func() { s.Close() })
	}
	if err := plain.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := implicit.ListenTLS("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*memimap.Server{plain, implicit} {
		if _, err := s.AddUser("dave", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	u := imaptest.User{Login: "dave", Password: "pw"}

	tests := []struct {
		name   string
		server *memimap.Server
		mode   imapconn.TLSMode
		verify bool
		class  imapconn.Class // "" for success
		inMsg  string
	}{
		{name: "starttls", server: plain, mode: imapconn.TLSStartTLS},
		{name: "implicit tls", server: implicit, mode: imapconn.TLSImplicit},
		{name: "implicit tls, untrusted certificate", server: implicit, mode: imapconn.TLSImplicit, verify: true,
			class: imapconn.ClassPermanent, inMsg: "certificate"},
		{name: "starttls, untrusted certificate", server: plain, mode: imapconn.TLSStartTLS, verify: true,
			class: imapconn.ClassPermanent, inMsg: "certificate"},
		{name: "plain to a TLS port", server: implicit, mode: imapconn.TLSNone,
			class: imapconn.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(tt.server, u)
			cfg.TLS, cfg.InsecureSkipVerify = tt.mode, !tt.verify
			cfg.DialTimeout = time.Second
			c, err := imapconn.Dial(context.Background(), cfg)
			if tt.class == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if _, err := c.ListFolders(context.Background()); err != nil {
					t.Fatalf("ListFolders over TLS: %v", err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			t.Log(err)
			if got := imapconn.Classify(err); got != tt.class {
				t.Errorf("Classify = %q, want %q (err: %v)", got, tt.class, err)
			}
			if !strings.Contains(err.Error(), tt.inMsg) {
				t.Errorf("error %q does not mention %q", err, tt.inMsg)
			}
		})
	}
}

func TestThrottledByConnectionLimit(t *testing.T) {
	d := imaptest.StartDovecot(t, imaptest.WithMaxUserConnections(1))
	u := d.AddUser(t, "alice", "pw")
	first := dial(t, config(d, u))
	_, err := imapconn.Dial(context.Background(), config(d, u))
	if !errors.Is(err, imapconn.ErrThrottled) || !strings.Contains(err.Error(), "limiting connections") {
		t.Fatalf("second connection: %v, want a throttled error", err)
	}
	first.Close()
	// The slot is released asynchronously by the server: allow it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := imapconn.Dial(context.Background(), config(d, u))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the first connection closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIdle(t *testing.T) {
	d := imaptest.StartDovecot(t)
	u := d.AddUser(t, "alice", "pw")
	admin := d.Client(t, u)
	first := admin.AddMessage("INBOX", message(0, 50))
	c := dial(t, config(d, u))
	ctx := context.Background()

	tests := []struct {
		name   string
		change func()
	}{
		{"new message", func() { admin.AddMessage("INBOX", message(1, 50)) }},
		{"flag change", func() { admin.SetFlags("INBOX", first, `\Flagged`) }},
		{"expunge", func() { admin.Expunge("INBOX", first) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				changed bool
				err     error
			}
			done := make(chan result, 1)
			go func() {
				changed, err := c.Idle(ctx, "INBOX", 20*time.Second)
				done <- result{changed, err}
			}()
			time.Sleep(200 * time.Millisecond) // let IDLE start: the change must arrive during it
			start := time.Now()
			tt.change()
			r := <-done
			if r.err != nil || !r.changed {
				t.Fatalf("Idle = %v, %v; want a change", r.changed, r.err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("change noticed after %v", took)
			}
		})
	}

	t.Run("quiet folder", func(t *testing.T) {
		changed, err := c.Idle(ctx, "INBOX", 300*time.Millisecond)
		if err != nil || changed {
			t.Fatalf("Idle = %v, %v; want no change and no error", changed, err)
		}
		// The connection is still good for commands.
		if _, err := c.SearchAllUIDs(ctx); err != nil {
			t.Fatalf("command after Idle: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := c.Idle(ctx, "INBOX", time.Minute)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's deadline", err)
		}
	})
}

func TestIMAP4rev2Server(t *testing.T) {
	// An IMAP4rev2 server sends UTF-8 names and implies LIST-STATUS and ESEARCH.
	m := imaptest.StartMemServer(t, memimap.WithIMAP4rev2())
	u, err := m.AddUser("carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CreateFolder(u.Login, "A&B 日本語"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := m.Append(u.Login, "A&B 日本語", message(i, 100), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, config(m, u))
	if caps := c.Caps(); !caps.IMAP4rev2 || !caps.ListStatus || !caps.ESearch {
		t.Fatalf("caps = %+v", caps)
	}
	ctx := context.Background()
	folders, err := c.ListFolders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := findFolder(t, folders, "A&B 日本語").Status; st.Messages != 3 || st.UIDNext != 4 {
		t.Errorf("status = %+v, want 3 messages and UIDNEXT 4", st)
	}
	if _, err := c.Select(ctx, "A&B 日本語", false); err != nil {
		t.Fatal(err)
	}
	uids, err := c.SearchAllUIDs(ctx)
	if err != nil || !slices.Equal(uids, []uint32{1, 2, 3}) {
		t.Fatalf("SearchAllUIDs = %v, %v", uids, err)
	}
	if got := fetchAll(t, c, imapconn.UIDsFrom(2)); len(got) != 2 || !bytes.Equal(got[3].Raw, message(2, 100)) {
		t.Errorf("fetch 2:* returned %d messages", len(got))
	}
}
