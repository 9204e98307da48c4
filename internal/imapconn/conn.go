// Package imapconn is mailsync's IMAP client: dial, TLS, login, the handful of commands a sync
// needs and the writes of actions on mail (actions.go), with timeouts, cancellation and error
// classes on top of go-imap v2. It is the only
// production package that imports go-imap, so the library's quirks stay here:
//
//   - go-imap takes no context. Every method arms a watchdog that closes the socket when the
//     context is done or the command makes no progress for Config.CommandTimeout; the method then
//     returns an *Error wrapping ctx.Err() (or a timeout). A closed Conn is unusable: dial again.
//   - go-imap v2 beta.8 has no QRESYNC: an unsolicited VANISHED would close the connection, so
//     QRESYNC is never enabled. Gmail's X-GM-* items are never requested for the same reason.
//   - Bodies are streamed from the socket, one message at a time, never buffered whole-folder.
//   - The server is not trusted (Limits): go-imap reads it through a frame reader that caps every
//     response outside message bodies and respells folder names go-imap could not decode; a body
//     is never allocated from its announced size, and one above the maximum is not read.
//
// A Conn runs one command at a time: it is not safe for concurrent use. Open several Conns for
// parallelism.
package imapconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Caps are the server capabilities the syncer chooses its strategy by.
type Caps struct {
	IMAP4rev2  bool
	CondStore  bool // HIGHESTMODSEQ, CHANGEDSINCE
	ListStatus bool // every folder's STATUS in one LIST round trip
	ESearch    bool // compact UID SEARCH results
	Idle       bool
	UIDPlus    bool
	Move       bool
	ObjectID   bool // RFC 8474: a folder's MAILBOXID comes with every SELECT
}

func capsFrom(set imap.CapSet) Caps {
	return Caps{
		IMAP4rev2:  set.Has(imap.CapIMAP4rev2),
		CondStore:  set.Has(imap.CapCondStore),
		ListStatus: set.Has(imap.CapListStatus), // CapSet.Has knows IMAP4rev2 implies it
		ESearch:    set.Has(imap.CapESearch),
		Idle:       set.Has(imap.CapIdle),
		UIDPlus:    set.Has(imap.CapUIDPlus),
		Move:       set.Has(imap.CapMove),
		ObjectID:   set.Has(imap.CapObjectID),
	}
}

// Conn is one logged-in IMAP connection.
type Conn struct {
	cfg  Config
	addr string
	log  *slog.Logger

	// sock is the TCP socket under everything (TLS included): closing it aborts whatever
	// command is in flight, which is how contexts and timeouts are enforced.
	sock   net.Conn
	client *imapclient.Client
	caps   Caps
	// tap sees what go-imap reads while a SELECT or a conditional STORE is in flight, for the
	// MAILBOXID and MODIFIED response codes it drops.
	tap idTap
	// sel is the folder selected and how: writes need a read-write SELECT, and one is sent only
	// when that folder is not selected read-write already (see open).
	sel selection

	// changed receives a token whenever the server reports, unasked, that the selected folder
	// changed (EXISTS, EXPUNGE, FETCH). Filled by go-imap's reader goroutine; read by Idle.
	changed chan struct{}

	mu sync.Mutex
	// aborted records why the watchdog closed the socket (ctx.Err() or a timeout), so the
	// caller sees that instead of "use of closed network connection".
	aborted error
	// lost is set once the connection is unusable; every later call fails fast with it.
	lost error
	// rawNames holds the folder names the server spelled in invalid modified UTF-7, as go-imap
	// reports them (see frameReader).
	rawNames map[string]bool

	// frames is what go-imap reads the server through: it enforces Limits.MaxResponseSize.
	frames *frameReader
	// blobs are the SASL initial responses sent, redacted from errors like the password.
	blobs []string
	// lastRefusal is the server's NO to the previous OAuth2 token.
	lastRefusal error
}

// Dial connects to the server, secures the connection as cfg.TLS says, and logs in. ctx bounds
// the whole establishment: cancelling it closes the socket and Dial returns ctx.Err() wrapped in
// an *Error. Later commands take their own contexts.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Conn{cfg: cfg, addr: cfg.Addr(), changed: make(chan struct{}, 1)}
	c.log = cfg.Logger.With("imap_addr", c.addr, "imap_login", cfg.Login)

	start := time.Now()
	if err := c.connect(ctx); err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.unreached = true
		}
		return nil, c.seal(err)
	}
	if err := c.login(ctx); err != nil {
		c.Close()
		return nil, c.seal(err)
	}
	c.log.Debug("imap connected", "tls", string(cfg.TLS), "caps", fmt.Sprintf("%+v", c.caps),
		"elapsed", time.Since(start))
	return c, nil
}

func (c *Conn) connect(ctx context.Context) error {
	op := fmt.Sprintf("connect to %s (TLS mode %s)", c.addr, c.cfg.TLS)
	if err := ctx.Err(); err != nil {
		return &Error{Op: op, Class: ClassTransient, Err: err}
	}
	dialer := net.Dialer{Timeout: c.cfg.DialTimeout, Control: c.control()}
	sock, err := dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		class := classifyCause(err)
		if errors.Is(err, ErrDestinationRefused) {
			class = ClassPermanent
		}
		return &Error{Op: op, Class: class, Err: err}
	}
	c.sock = sock

	// One deadline for the TLS handshake and the greeting, like the TCP connect.
	g := c.arm(ctx, c.cfg.DialTimeout, fmt.Errorf("%w: no TLS handshake or greeting within %s",
		errTimeout, c.cfg.DialTimeout))
	defer g.disarm()

	tlsConfig := &tls.Config{
		ServerName:         c.cfg.Host,
		InsecureSkipVerify: c.cfg.InsecureSkipVerify, //nolint:gosec // opt-in, for test servers
		MinVersion:         tls.VersionTLS12,
	}
	opts := &imapclient.Options{TLSConfig: tlsConfig, UnilateralDataHandler: c.unilateralHandler(), DebugWriter: &c.tap}
	switch c.cfg.TLS {
	case TLSImplicit:
		tlsConn := tls.Client(sock, tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			sock.Close()
			return c.fail(op, err)
		}
		c.client = imapclient.New(c.framed(tlsConn, tlsConn), opts)
	case TLSStartTLS:
		// Upgraded here rather than by go-imap, whose STARTTLS would put TLS above the frame
		// reader.
		tlsConn, greeting, err := c.startTLS(ctx, sock, tlsConfig)
		if err != nil {
			sock.Close()
			op := fmt.Sprintf("STARTTLS with %s", c.addr)
			var se *imap.Error
			if errors.As(err, &se) {
				return &Error{Op: op, Class: ClassPermanent, Err: err}
			}
			return c.fail(op, err)
		}
		c.client = imapclient.New(c.framed(tlsConn, io.MultiReader(bytes.NewReader(greeting), tlsConn)), opts)
	default:
		c.client = imapclient.New(c.framed(sock, sock), opts)
	}
	if err := c.client.WaitGreeting(); err != nil {
		c.client.Close()
		var se *imap.Error
		if errors.As(err, &se) {
			// A BYE greeting is how busy servers turn connections away.
			return &Error{Op: op, Class: ClassThrottled, Err: err}
		}
		return c.fail(op, err)
	}
	return nil
}

func (c *Conn) login(ctx context.Context) error {
	op := fmt.Sprintf("login to %s as %s", c.addr, c.cfg.Login)
	g := c.arm(ctx, c.cfg.CommandTimeout, commandTimeout(c.cfg.CommandTimeout))
	defer g.disarm()

	var err error
	if c.cfg.OAuthToken != nil {
		op = fmt.Sprintf("OAuth2 login to %s as %s", c.addr, c.cfg.Login)
		err = c.authenticate(ctx, g)
	} else {
		err = c.client.Login(c.cfg.Login, c.cfg.Password).Wait()
	}
	var te *tokenError
	if errors.As(err, &te) {
		return te.err // the token source's own error, as it made it
	}
	if err != nil {
		var se *imap.Error
		if errors.As(err, &se) {
			class := ClassAuth
			switch {
			case isThrottle(se):
				class = ClassThrottled
			case se.Type == imap.StatusResponseTypeBad:
				class = ClassPermanent
			}
			return &Error{Op: op, Class: class, Err: loginAnswer(se)}
		}
		if classifyCause(err) == ClassPermanent && !isTLSFailure(err) {
			// go-imap could not parse the answer, and its message may quote it: withhold it too.
			err = errLoginAnswerUnreadable
		}
		return c.fail(op, err)
	}
	// Servers usually send their post-login capabilities with the OK; otherwise this asks.
	set := c.client.Caps()
	if set == nil {
		return c.fail(op, errors.New("no CAPABILITY response after login"))
	}
	c.caps = capsFrom(set)
	return nil
}

// unilateralHandler notes unsolicited changes for Idle. Its callbacks run on go-imap's reader
// goroutine: they must not send commands or block. An unsolicited FETCH must be drained, or the
// reader would wait forever for someone to read it.
func (c *Conn) unilateralHandler() *imapclient.UnilateralDataHandler {
	notify := func() {
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
	return &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) { notify() },
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				notify()
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			for msg.Next() != nil { // discards each item, literals included
			}
			notify()
		},
	}
}

// Caps returns the capabilities the server advertised after login.
func (c *Conn) Caps() Caps { return c.caps }

// Close closes the connection at once (no LOGOUT round trip: the server does not need one).
// It is safe to call more than once.
func (c *Conn) Close() error {
	c.setLost(net.ErrClosed)
	err := c.sock.Close()
	c.client.Close() // waits for the reader goroutine to exit
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// guard is the watchdog of one command: it closes the socket when ctx is done or when the
// command makes no progress for the timeout, and tells Config.Stalled when it has made none for
// the stall threshold.
type guard struct {
	timeout time.Duration
	timer   *time.Timer
	stopCtx func() bool
	stall   *stallWatch // nil without Config.Stalled
	// deadline bounds the command's total time, progress or not (Limits.CommandDeadline).
	deadline *time.Timer
}

// stallWatch reports a command that went quiet, and its end. Its state is under mu because the
// timer fires on its own goroutine while progress comes from the command's.
type stallWatch struct {
	after  time.Duration
	report func(since time.Time)
	timer  *time.Timer

	mu       sync.Mutex
	last     time.Time // last progress
	off      bool      // paused or disarmed: silence is not the server's
	reported bool
}

// errTimeout is the cause recorded when a watchdog closes the connection for lack of progress.
var errTimeout = errors.New("timeout")

// IsTimeout reports whether err ended a command (or a dial) that made no progress for its timeout:
// the server stopped answering, as opposed to answering something wrong.
func IsTimeout(err error) bool { return errors.Is(err, errTimeout) }

func commandTimeout(d time.Duration) error {
	return fmt.Errorf("%w: no progress within %s", errTimeout, d)
}

func (c *Conn) arm(ctx context.Context, timeout time.Duration, cause error) *guard {
	g := &guard{
		timeout: timeout,
		timer:   time.AfterFunc(timeout, func() { c.abort(cause) }),
		stopCtx: context.AfterFunc(ctx, func() { c.abort(ctx.Err()) }),
	}
	if c.cfg.Stalled != nil {
		w := &stallWatch{after: min(c.cfg.StallAfter, timeout/2), report: c.cfg.Stalled, last: time.Now()}
		w.timer = time.AfterFunc(w.after, w.fire)
		g.stall = w
	}
	return g
}

func (w *stallWatch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.off || w.reported {
		return
	}
	if quiet := time.Since(w.last); quiet < w.after { // progress came while the timer fired
		w.timer.Reset(w.after - quiet)
		return
	}
	w.reported = true
	w.report(w.last)
}

// set records progress (or the end of the silence that counts) and re-arms the timer unless off.
func (w *stallWatch) set(off bool) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last, w.off = time.Now(), off
	if off {
		w.timer.Stop()
	} else {
		w.timer.Reset(w.after)
	}
	if w.reported {
		w.reported = false
		w.report(time.Time{})
	}
}

// progress restarts the timeout clock; called as data arrives.
func (g *guard) progress() {
	g.timer.Reset(g.timeout)
	g.stall.set(false)
}

// pause stops the timeout clock while the caller holds the data; ctx still applies.
func (g *guard) pause() {
	g.timer.Stop()
	g.stall.set(true)
}

// quiet keeps the timeout but reports no stall: for IDLE, where silence is the normal state.
func (g *guard) quiet() { g.stall.set(true) }

func (g *guard) disarm() {
	g.timer.Stop()
	g.stopCtx()
	g.unbounded()
	g.stall.set(true)
}

func (c *Conn) abort(cause error) {
	c.mu.Lock()
	if c.aborted == nil {
		c.aborted = cause
	}
	c.mu.Unlock()
	c.setLost(cause)
	c.sock.Close()
}

// abandon gives up on a command after reading a literal failed: it closes the connection, waits
// for go-imap's reader goroutine to exit, then releases the command. The order matters: a failed
// literal has already handed the socket buffer back to the reader goroutine, and releasing the
// command re-reads that literal, so it must wait until the goroutine is gone (go-imap beta.8
// otherwise races on its bufio.Reader).
func (c *Conn) abandon(cmd interface{ Close() error }, cause error) {
	c.abort(cause)
	c.client.Close()
	cmd.Close()
}

func (c *Conn) setLost(err error) {
	c.mu.Lock()
	if c.lost == nil {
		c.lost = err
	}
	c.mu.Unlock()
}

// fail turns an error that broke the connection into an *Error, preferring the watchdog's reason
// (cancelled, timed out) over the socket's symptom.
func (c *Conn) fail(op string, err error) error {
	c.mu.Lock()
	if c.aborted != nil {
		err = c.aborted
	}
	c.mu.Unlock()
	c.setLost(err)
	class := classifyCause(err)
	if class == ClassPermanent && !isTLSFailure(err) && !c.repeatable(&err) {
		// The connection died under a command (EOF, reset): a new connection may well succeed.
		// A response go-imap could not parse, or one past a limit, will come again: permanent.
		class = ClassTransient
	}
	return c.seal(&Error{Op: op, Class: class, Err: err})
}

// begin checks that a command can be sent and arms its watchdog.
func (c *Conn) begin(ctx context.Context, op string) (*guard, error) {
	c.mu.Lock()
	lost := c.lost
	c.mu.Unlock()
	if lost != nil {
		return nil, c.seal(&Error{Op: op, Class: ClassTransient, Err: fmt.Errorf("connection already closed: %w", lost)})
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: op, Class: ClassTransient, Err: err}
	}
	g := c.arm(ctx, c.cfg.CommandTimeout, commandTimeout(c.cfg.CommandTimeout))
	c.bound(g)
	return g, nil
}

// end disarms the watchdog and classifies the command's result: a status response (NO, BAD)
// leaves the connection usable; anything else means it is gone.
func (c *Conn) end(g *guard, op string, err error) error {
	g.disarm()
	if err == nil {
		return nil
	}
	var se *imap.Error
	if errors.As(err, &se) {
		return c.seal(&Error{Op: op, Class: classifyStatus(se), Err: err})
	}
	return c.fail(op, err)
}

// selected names the selected folder for error messages.
func (c *Conn) selected() string {
	if mbox := c.client.Mailbox(); mbox != nil {
		return mbox.Name
	}
	return ""
}
