package syncer_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/imaptest"
	"mailsync/internal/memimap"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
	"mailsync/internal/testenv"
)

// smallDisk mounts a tmpfs of sizeMB in a fresh directory, unmounted when the test ends, and
// returns the directory. Mounting needs root: otherwise the test is skipped.
func smallDisk(t *testing.T, sizeMB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Root(t, "mount a size-limited tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMB), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d MB tmpfs: %v: %s", sizeMB, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// appendBulky adds n attachments of 64 KiB (their base64 text is about 86 KB; one random block,
// the same in each) to the user's INBOX and returns their total size.
func appendBulky(t *testing.T, m *memimap.Server, login string, seed uint64, n int) int64 {
	t.Helper()
	block := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	var body strings.Builder
	for b64 := base64.StdEncoding.EncodeToString(block); len(b64) > 0; {
		line := b64[:min(76, len(b64))]
		body.WriteString(line + "\r\n")
		b64 = b64[len(line):]
	}
	var total int64
	for i := range n {
		raw := fmt.Appendf(nil, "From: sender-%d@example.test\r\nTo: bob@example.test\r\nSubject: bulky %d-%d\r\n"+
			"Message-ID: <bulky-%d-%d@example.test>\r\nDate: Mon, 01 Sep 2025 10:00:00 +0000\r\n"+
			"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%s", i, seed, i, seed, i, body.String())
		if _, err := m.Append(login, "INBOX", raw, time.Date(2025, 9, 1, 10, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		total += int64(len(raw))
	}
	return total
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// TestTwoSyncsFitOnASmallDisk: SQLite needs room for its database and its WAL at once: a
// checkpoint grows the database while the WAL still holds every page it copies. A sync writes more
// than its database's growth into the WAL, and a PASSIVE checkpoint reuses the WAL file but never
// shrinks it, so a WAL left at a first sync's size plus the next sync's growth no longer fit on a
// disk that held the first sync: the final checkpoint stops on the full disk, the data stays in the
// WAL and the disk stays full. The WAL is now emptied when a sync ends. Measured here, with the
// change log written in the same transactions: the first sync, 13.5 MB of mail in one batch, peaks
// at a WAL of 23-27 MB (when the checkpoints beside the writer run decides); after the second, 8.1
// MB, the database is 26.6 MB with the WAL at 0. Both fit in 46 MiB (48.2 MB), which leaves room for
// the first sync's final checkpoint at the WAL's largest peak (42 MiB did not, 2 runs in 10 on a
// loaded machine); keeping the first WAL would need 26.6 + 25 MB.
func TestTwoSyncsFitOnASmallDisk(t *testing.T) {
	const diskMB = 46
	dir := smallDisk(t, diskMB)
	m := imaptest.StartMemServer(t)
	u, err := m.AddUser("bob", "secret-pw")
	if err != nil {
		t.Fatal(err)
	}
	srv := server{host: m.Host(), port: m.Port(), login: u.Login, passwd: u.Password, delim: "/", describe: "memserver"}
	db := filepath.Join(dir, "mailsync.db")
	e, key := newAccount(t, "sqlite:"+db, srv)
	// One batch per sync: the WAL's size then does not depend on when checkpoints happen to run.
	e.startWorker(t, key, syncer.Options{BatchMessages: 1000, BatchBytes: 1 << 30})
	var walPeak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if w := fileSize(db + "-wal"); w > walPeak.Load() {
				walPeak.Store(w)
			}
		}
	}()
	defer func() { close(stop); <-sampled }()
	for i, n := range []int{150, 90} {
		mail := appendBulky(t, m, u.Login, uint64(i+1), n)
		walPeak.Store(0)
		tk := e.sync(t, false)
		if tk.State != task.Succeeded {
			t.Fatalf("sync %d (%.1f MB of mail) on a %d MiB disk: %s: %s", i+1, float64(mail)/1e6, diskMB, tk.State, tk.Error)
		}
		t.Logf("sync %d: %.1f MB of mail, %d messages: WAL %.1f MB at its peak",
			i+1, float64(mail)/1e6, tk.Progress.MessagesDone, float64(walPeak.Load())/1e6)
		// The WAL is emptied just after the sync's end, beside the caller: a sync started within
		// those milliseconds would race the checkpoint that copies the WAL into the database
		// (both on the disk at once, the WAL at its peak), which is not what this test measures.
		for deadline := time.Now().Add(5 * time.Second); fileSize(db+"-wal") > 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Room for the next sync comes back at once: the WAL is emptied when a sync ends.
	free := func() int64 {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err != nil {
			t.Fatal(err)
		}
		return int64(fs.Bavail) * fs.Bsize
	}
	deadline := time.Now().Add(5 * time.Second)
	for (fileSize(db+"-wal") > 0 || free() < 10e6) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("after both: database %.1f MB, WAL %d bytes, %.1f MB free", float64(fileSize(db))/1e6, fileSize(db+"-wal"), float64(free())/1e6)
	if w, f := fileSize(db+"-wal"), free(); w > 0 || f < 10e6 {
		t.Errorf("5 s after the last sync the WAL is %d bytes and %.1f MB of the %d MiB disk are free, want an empty WAL and room for the next sync", w, float64(f)/1e6, diskMB)
	}
	if n := e.storedCount(t); n != 240 {
		t.Fatalf("%d messages stored, want 240", n)
	}
}
