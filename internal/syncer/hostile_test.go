package syncer_test

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest/hostile"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/testenv"
)

func onHostile(s *hostile.Server) server {
	return server{host: s.Host(), port: s.Port(), login: s.Login, passwd: s.Password, delim: "/"}
}

func plain(uid int) hostile.Message {
	return hostile.Message{UID: uint32(uid), Flags: []string{`\Seen`},
		Raw: []byte(fmt.Sprintf("From: a@example.test\r\nSubject: message %d\r\n\r\nHello %d.\r\n", uid, uid))}
}

// wantStored fails unless the store holds exactly these messages in each named folder, byte for
// byte.
func (e *env) wantStored(t *testing.T, want map[string][]hostile.Message) {
	t.Helper()
	got := e.storeState(t)
	for name, msgs := range want {
		stored := got[name]
		if len(stored) != len(msgs) {
			t.Errorf("folder %q: %d messages stored (UIDs %v), want %d", name, len(stored), uidsOf(stored), len(msgs))
			continue
		}
		for i, m := range msgs {
			if stored[i].UID != m.UID || int64(len(stored[i].Raw)) != m.Len() || sha256.Sum256(stored[i].Raw) != m.Sum() {
				t.Errorf("folder %q: stored UID %d (%d bytes) differs from the server's UID %d (%d bytes)",
					name, stored[i].UID, len(stored[i].Raw), m.UID, m.Len())
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("folder %q stored, want only %v", name, keys(want))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestHostileServerFailsOnlyWhatItBreaks plays a hostile IMAP server against a real sync, on
// both engines: a message or folder that cannot be taken is skipped and named, and the rest of
// the account is synced; an answer that would exhaust the process fails the sync at once, with a
// permanent error that names the limit.
func TestHostileServerFailsOnlyWhatItBreaks(t *testing.T) {
	t.Parallel()
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		inbox := []hostile.Message{plain(1), {UID: 2, Size: 1000, Announce: 64 << 30}, plain(3), plain(4)}
		archive := []hostile.Message{plain(1), {UID: 2, Size: 300 << 10}, plain(3)}
		tests := []struct {
			name    string
			folders []hostile.Folder
			limits  imapconn.Limits
			list    hostile.Handler
			// On success: what is stored, and what the final phase names.
			stored map[string][]hostile.Message
			named  []string
			// On failure: what the error says.
			failed []string
		}{
			{
				name: "a body announced at 64 GB",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7, Messages: inbox},
					{Name: "Archive", UIDValidity: 8, Messages: archive}},
				stored: map[string][]hostile.Message{"INBOX": {inbox[0], inbox[2], inbox[3]}, "Archive": archive},
				named:  []string{`message UID 2 of "INBOX": 64 GiB, above the maximum message size of 100.0 MiB: not fetched`},
			},
			{
				name: "a message above a configured maximum",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7, Messages: []hostile.Message{plain(1), plain(2)}},
					{Name: "Archive", UIDValidity: 8, Messages: archive}},
				limits: imapconn.Limits{MaxMessageSize: 256 << 10},
				stored: map[string][]hostile.Message{"INBOX": {plain(1), plain(2)}, "Archive": {archive[0], archive[2]}},
				named:  []string{`message UID 2 of "Archive": 300.0 KiB, above the maximum message size of 256.0 KiB`},
			},
			{
				name: "folder names with an unescaped &",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7, Messages: []hostile.Message{plain(1)}},
					{Name: "R&D", UIDValidity: 8, Messages: []hostile.Message{plain(1)}},
					{Name: "Tom & Jerry", UIDValidity: 9, Messages: []hostile.Message{plain(1)}},
					{Name: "Donn&AOk-es", UIDValidity: 10, Messages: []hostile.Message{plain(1), plain(2)}}},
				stored: map[string][]hostile.Message{"INBOX": {plain(1)}, "Données": {plain(1), plain(2)}},
				named:  []string{`"R&D": the server's name for it is not valid modified UTF-7`, `"Tom & Jerry"`},
			},
			{
				name:    "a folder name as an endless literal",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7}},
				list: func(s *hostile.Session, _ string) string {
					s.Printf("* LIST () \"/\" INBOX\r\n* LIST () \"/\" {99999999999}\r\n")
					s.Endless([]byte(strings.Repeat("a", 4096)), 0)
					return ""
				},
				failed: []string{"permanent error", "list folders", "more than the maximum response size of 16.0 MiB"},
			},
			{
				name:    "a LIST that never ends",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7}},
				list: func(s *hostile.Session, _ string) string {
					for i := 0; s.Printf("* LIST () \"/\" \"folder %d\"\r\n", i); i++ {
					}
					return ""
				},
				failed: []string{"permanent error", "listed more than 10000 folders"},
			},
			{
				name:    "a LIST answer that cannot be parsed",
				folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 7}},
				list: func(s *hostile.Session, _ string) string {
					s.Printf("* LIST (\\Noselect \"/\" broken\r\n")
					return "OK"
				},
				failed: []string{"permanent error", "cannot parse"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				srv := hostile.Start(t, tt.folders...)
				if tt.list != nil {
					srv.Handle("LIST", tt.list)
				}
				e := newEnv(t, dialect, onHostile(srv), syncer.Options{Limits: tt.limits})
				start := time.Now()
				tk := e.sync(t, false)
				t.Logf("%s after %s; phase %q", tk.State, time.Since(start).Round(time.Millisecond), tk.Progress.Phase)
				if time.Since(start) > 20*time.Second {
					t.Errorf("the sync took %s", time.Since(start))
				}
				if tt.failed != nil {
					wantFailed(t, tk, tt.failed...)
					return
				}
				if tk.State != task.Succeeded {
					t.Fatalf("sync %s: %s", tk.State, tk.Error)
				}
				for _, n := range tt.named {
					if !strings.Contains(tk.Progress.Phase, n) {
						t.Errorf("final phase %q does not say %q", tk.Progress.Phase, n)
					}
				}
				e.wantStored(t, tt.stored)
				// The next sync finds nothing new: what was skipped stays skipped, and nothing
				// trips the account again.
				if again := e.syncOK(t, false); again.Progress.New != 0 {
					t.Errorf("the next sync stored %d new messages, want 0", again.Progress.New)
				}
			})
		}
	})
}

// TestHostileServerMemory runs syncs against hostile and heavy mailboxes in a separate process
// and checks its peak RSS: at most 64 MiB plus twice the largest message fetched, whatever the
// server announces or the mix of sizes (bench/README.md has the figures).
func TestHostileServerMemory(t *testing.T) {
	testenv.Slow(t, "syncs hundreds of MB through a subprocess to measure its memory")
	t.Parallel()
	ordinary := func(n int) []hostile.Message {
		out := make([]hostile.Message, n)
		for i := range out {
			out[i] = hostile.Message{UID: uint32(i + 1), Size: 2<<10 + int64(i%50)<<10}
		}
		return out
	}
	// The race detector's build is many times slower (SQLite included, being Go) and larger: it
	// gets a twentieth of the mail and limits memoryFactor times higher. The figures are from
	// the normal build (go test -run TestHostileServerMemory ./internal/syncer).
	scale := int64(1)
	if memoryFactor > 1 {
		scale = 20
	}
	mixed := ordinary(int(2000 / scale))
	for i := range 12 {
		mixed[int64(100+i*150)/scale].Size = 40 << 20 / scale
	}
	announced := ordinary(200)
	announced[50] = hostile.Message{UID: 51, Size: 1000, Announce: 64 << 30}
	huge := append(ordinary(100), hostile.Message{UID: 101, Size: 200 << 20 / scale})
	huge = append(huge, ordinary(200)[101:]...)

	tests := []struct {
		name    string
		folders []hostile.Folder
		list    hostile.Handler
		maxMsg  int64
		largest int64 // the largest message fetched, or the largest response buffered
		state   string
	}{
		{name: "a body announced at 64 GB", folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 1, Messages: announced}},
			largest: 51 << 10, state: "succeeded"},
		{name: "a folder name as an endless literal", folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 1}},
			list: func(s *hostile.Session, _ string) string {
				s.Printf("* LIST () \"/\" {99999999999}\r\n")
				s.Endless([]byte(strings.Repeat("a", 4096)), 0)
				return ""
			}, state: "failed"},
		{name: "an endless line in a LIST", folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 1}},
			list: func(s *hostile.Session, _ string) string {
				s.Printf("* LIST () \"/\" \"")
				s.Endless([]byte(strings.Repeat("a", 4096)), 0)
				return ""
			}, largest: imapconn.DefaultMaxResponseSize, state: "failed"},
		{name: "twelve 40 MB messages among 2,000 ordinary ones (scaled under race)", folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 1, Messages: mixed}},
			largest: 40 << 20 / scale, state: "succeeded"},
		{name: "one 200 MB message (scaled under race)", folders: []hostile.Folder{{Name: "INBOX", UIDValidity: 1, Messages: huge}},
			maxMsg: 256 << 20, largest: 200 << 20 / scale, state: "succeeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := hostile.Start(t, tt.folders...)
			if tt.list != nil {
				srv.Handle("LIST", tt.list)
			}
			dsn := "sqlite:" + t.TempDir() + "/mailsync.db"
			e, key := newAccount(t, dsn, onHostile(srv))
			if _, _, err := e.tasks.Start(t.Context(), e.acct.ID, false); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p := startSyncProcess(t, dsn, key, e.acct.ID, 0, fmt.Sprintf("%s=%d", helperMaxMsg, tt.maxMsg))
			last, rss := p.finish(t)
			limit := (64<<20 + 2*tt.largest) * memoryFactor
			t.Logf("%s in %s; peak RSS %d MiB (limit %d MiB)", last, time.Since(start).Round(time.Millisecond), rss>>20, limit>>20)
			if !strings.HasPrefix(last, "done "+tt.state) {
				t.Fatalf("sync ended %q, want %s", last, tt.state)
			}
			if rss > limit {
				t.Errorf("peak RSS %d MiB, want at most %d MiB (64 MiB + 2 × the largest message)", rss>>20, limit>>20)
			}
		})
	}
}
