// Package instancetest holds the fixtures every test and benchmark of a whole instance shares: a
// lifecycle in milliseconds, password hashing cheap enough to run per test, an IMAP login check
// that accepts anything, and a log sink the test can read while the instance writes it. It imports neither the API nor the Instance, so that the API's
// own tests can use it too.
package instancetest

import (
	"bytes"
	"context"
	"sync"
	"time"

	"mailsync/internal/auth"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// Lifecycle is a task lifecycle in milliseconds: a silent task is dead after 600 ms, and the
// reaper looks every 200 ms.
func Lifecycle() task.Config {
	return task.Config{
		HeartbeatInterval: 100 * time.Millisecond,
		HeartbeatTimeout:  600 * time.Millisecond,
		SelfFence:         300 * time.Millisecond,
		ReapInterval:      200 * time.Millisecond,
		QueuedTimeout:     time.Minute,
		MaxAttempts:       3,
		MaxRunTime:        time.Hour,
	}
}

// CheapParams keep password hashing fast in tests; the code path is the real one.
var CheapParams = auth.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Key is a fixed server key of the right size.
func Key() []byte { return bytes.Repeat([]byte{7}, secret.KeySize) }

// AcceptAnyLogin stands in for the IMAP login check where IMAP is not what is tested.
type AcceptAnyLogin struct{}

// CheckLogin accepts every login.
func (AcceptAnyLogin) CheckLogin(context.Context, store.Account, string) error { return nil }

// LogBuffer is a log sink (or a process's stderr) that goroutines write while the test reads
// it. The zero value is ready.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
