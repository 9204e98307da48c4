package imapconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// DestinationPolicy decides whether a connection for host may go to ip (package netpolicy).
type DestinationPolicy interface {
	Check(host string, ip netip.Addr) error
}

// ErrDestinationRefused is matched (errors.Is) by a Dial that Config.Destinations refused.
var ErrDestinationRefused = errors.New("refused by the destination policy")

// control is the dialer's Control hook: it runs for every address the dialer is about to
// connect to, after DNS resolution, so the policy judges the address actually reached. A refusal
// stops that address before a byte is sent; the dialer goes on with the host's next address, if
// any.
func (c *Conn) control() func(network, address string, _ syscall.RawConn) error {
	if c.cfg.Destinations == nil {
		return nil
	}
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot read the address %q", ErrDestinationRefused, address)
		}
		if err := c.cfg.Destinations.Check(c.cfg.Host, ap.Addr()); err != nil {
			return fmt.Errorf("%w: %w", ErrDestinationRefused, err)
		}
		return nil
	}
}

// Public is the error as it may be shown to someone who is not the operator: a failure before
// the server was asked to log in (see Unreached) says only that, since its detail describes the
// server's network, and a refusal by the destination policy says that it was refused. Anything
// else is the error itself.
func (e *Error) Public() error {
	if !e.unreached || errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) {
		return e
	}
	p := *e
	var op *net.OpError
	switch {
	case errors.Is(e.Err, ErrDestinationRefused):
		p.Err = errors.New("this server may not connect there: the operator decides which destinations accounts may use")
	case errors.As(e.Err, &op) && op.Op == "dial":
		p.Err = errors.New("no IMAP server could be reached there (the operator's log has the detail)")
	default:
		p.Err = errors.New("the server there did not greet as an IMAP server, or TLS with it failed (the operator's log has the detail)")
	}
	return &p
}
