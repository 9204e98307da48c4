package imapconn

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Idle selects the folder (read-only) and waits with IMAP IDLE until the server reports a change
// in it (new message, expunge, flag change), maxWait passes, or ctx is done. It reports whether a
// change was seen; the caller then syncs the folder and calls Idle again. RFC 2177 asks clients
// to renew IDLE at least every 29 minutes: keep maxWait below that.
//
// It needs Caps().Idle; without it, it returns a permanent error and the caller should poll.
func (c *Conn) Idle(ctx context.Context, name string, maxWait time.Duration) (changed bool, err error) {
	op := fmt.Sprintf("idle in %q", name)
	if !c.caps.Idle {
		return false, &Error{Op: op, Class: ClassPermanent, Err: errors.New("the server does not support IDLE")}
	}
	// Forget changes seen before this call: the SELECT below reads the current state anyway.
	select {
	case <-c.changed:
	default:
	}
	if _, err := c.Select(ctx, name, false); err != nil {
		return false, err
	}

	// No per-command clock while idling: silence is the normal state. The watchdog still guards
	// against a server that never confirms the start or the end of IDLE.
	g, err := c.begin(ctx, op)
	if err != nil {
		return false, err
	}
	g.timer.Reset(maxWait + c.cfg.CommandTimeout)
	g.unbounded()
	g.quiet()
	cmd, err := c.client.Idle()
	if err != nil {
		return false, c.end(g, op, err)
	}
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	select {
	case <-c.changed:
		changed = true
	case <-timer.C:
	case <-ctx.Done():
	case <-c.client.Closed():
	}
	g.progress()
	err = cmd.Close() // sends DONE
	if err == nil {
		err = cmd.Wait()
	}
	if err := c.end(g, op, err); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		// DONE may have beaten the watchdog to the socket; the caller still asked to stop.
		return false, &Error{Op: op, Class: ClassTransient, Err: err}
	}
	if changed {
		return true, nil
	}
	// A change may have arrived while DONE was on its way.
	select {
	case <-c.changed:
		return true, nil
	default:
		return false, nil
	}
}
