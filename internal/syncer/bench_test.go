package syncer_test

import (
	"cmp"
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/mailgen"
	"mailsync/internal/syncer"
)

// dovecotWithCorpus starts a Dovecot holding n generated messages, its index already built.
func dovecotWithCorpus(tb testing.TB, n int) server {
	tb.Helper()
	d := imaptest.StartDovecot(tb)
	u := d.AddUser(tb, "bob", "secret-pw")
	d.WriteMailgen(tb, u, mailgen.Options{Seed: 11, Messages: n})
	srv := server{host: d.Host(), port: d.Port(), login: u.Login, passwd: u.Password, delim: ".", hasCondStore: true}
	warm(tb, srv)
	return srv
}

// warm makes Dovecot build its index of every folder, as a first access would.
func warm(tb testing.TB, srv server) {
	tb.Helper()
	eachFolder(tb, srv, func(c *imapconn.Conn, _ imapconn.Folder) error {
		_, err := c.FetchFlags(context.Background(), imapconn.UIDsFrom(1), 0)
		return err
	})
}

// BenchmarkFullSync measures a first sync of 20,000 messages into the database named by
// MAILSYNC_BENCH_DIALECT (sqlite by default, or postgres), then a no-change sync, with the raw
// fetch floor for comparison. bench/syncbench compares with mbsync; this one is for
// profiling (go test -bench FullSync -benchtime 1x -cpuprofile cpu.out).
func BenchmarkFullSync(b *testing.B) {
	srv := dovecotWithCorpus(b, 20000)
	for range 2 {
		n, d := rawFetch(b, srv)
		b.Logf("raw fetch of %d bodies: %s", n, d)
	}
	for b.Loop() {
		dialect := cmp.Or(os.Getenv("MAILSYNC_BENCH_DIALECT"), "sqlite")
		e := newEnv(b, dialect, srv, syncer.Options{})
		var ru0, ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		start := time.Now()
		tk := e.syncOK(b, false)
		full := time.Since(start)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		b.Logf("cpu user %s sys %s", time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()), time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano()))
		start = time.Now()
		e.syncOK(b, false)
		b.Logf("full %s (%d messages, %d MB), no-change %s", full, tk.Progress.New, tk.Progress.BytesDone>>20, time.Since(start))
	}
}

// rawFetch downloads every body of every folder and discards them: the floor of any sync.
func rawFetch(tb testing.TB, srv server) (int, time.Duration) {
	tb.Helper()
	start := time.Now()
	n := 0
	eachFolder(tb, srv, func(c *imapconn.Conn, _ imapconn.Folder) error {
		return c.FetchBodies(context.Background(), imapconn.UIDsFrom(1), func(imapconn.Message) error { n++; return nil })
	})
	return n, time.Since(start)
}
