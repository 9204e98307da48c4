package auth

import (
	"context"
	"errors"
	"time"
)

// Gate bounds how many password hashes are computed at once. Each argon2id run allocates its
// whole memory cost (64 MiB by default), so without a bound a burst of logins from many addresses
// takes as many times that as there are logins, and every one of them slows down.
type Gate struct {
	slots chan struct{}
	wait  time.Duration
}

// ErrBusy is returned by Gate.Enter when no slot freed up within the wait.
var ErrBusy = errors.New("auth: too many password checks at once")

// NewGate returns a Gate letting n hashes run at once; a caller waits at most wait for a slot.
func NewGate(n int, wait time.Duration) *Gate {
	return &Gate{slots: make(chan struct{}, max(n, 1)), wait: wait}
}

// Size is how many hashes may run at once.
func (g *Gate) Size() int { return cap(g.slots) }

// Wait is the longest a caller waits for a slot.
func (g *Gate) Wait() time.Duration { return g.wait }

// Enter takes a slot, waiting at most the gate's wait for one; call release when the hash is
// done. It returns ErrBusy when the wait ran out, or ctx's error.
func (g *Gate) Enter(ctx context.Context) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return g.leave, nil
	default:
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.leave, nil
	case <-timer.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *Gate) leave() { <-g.slots }

// GateSize is how many hashes of perHash bytes may run at once: at most a quarter of the
// available memory, at most one per processor (more only queue for CPU and answer later), and
// at least one.
func GateSize(perHash, available uint64, procs int) int {
	if perHash == 0 {
		return max(procs, 1)
	}
	n := available / 4 / perHash
	return int(max(1, min(n, uint64(max(procs, 1)))))
}
