package imapconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailsync/internal/mutf7"
)

// Default limits: far above what a real mailbox needs, far below what would hurt the process.
const (
	DefaultMaxMessageSize  = 100 << 20
	DefaultMaxResponseSize = 16 << 20
	DefaultMaxFolders      = 10_000
	DefaultCommandDeadline = 10 * time.Minute
)

// maxSearchUIDs bounds how many UIDs one SEARCH answer may name: an ESEARCH range is a few bytes
// on the wire but 4 bytes per UID once expanded.
const maxSearchUIDs = 1 << 24

// Limits bound what a server can make this client hold in memory or wait for. The server is
// whoever the account's owner points mailsync at: nothing it announces is trusted further than
// these.
type Limits struct {
	// MaxMessageSize is the largest message body fetched. A larger one is not read: FetchBodies
	// returns a *TooLargeError naming it (the connection is closed, since the body is on the wire).
	MaxMessageSize int64
	// MaxResponseSize bounds one server response (a line and the literals it announces), message
	// bodies aside. go-imap buffers such responses whole: a folder name sent as an endless literal
	// would otherwise grow without end.
	MaxResponseSize int64
	// MaxFolders is the most folders a LIST may return.
	MaxFolders int
	// CommandDeadline bounds the total time of one command other than a body fetch (whose clock
	// restarts at every message), progress or not: a server that keeps answering cannot hold a
	// LIST, STATUS or SEARCH open for ever.
	CommandDeadline time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageSize <= 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	if l.MaxResponseSize <= 0 {
		l.MaxResponseSize = DefaultMaxResponseSize
	}
	if l.MaxFolders <= 0 {
		l.MaxFolders = DefaultMaxFolders
	}
	if l.CommandDeadline <= 0 {
		l.CommandDeadline = DefaultCommandDeadline
	}
	return l
}

// LimitError says that the server went past one of the Limits. It is permanent: the same server
// will do the same again.
type LimitError struct {
	What string
}

func (e *LimitError) Error() string { return "refused: the server " + e.What }

// TooLargeError names a message above Limits.MaxMessageSize, which was not fetched.
type TooLargeError struct {
	UID   uint32 // 0 if the server sent the body before the UID
	Size  int64  // as the server announced it
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message UID %d is %s", e.UID, e.Why())
}

// Why says what was wrong with the message, without naming it.
func (e *TooLargeError) Why() string {
	return fmt.Sprintf("%s, above the maximum message size of %s: not fetched", bytesText(e.Size), bytesText(e.Limit))
}

// ProtocolError wraps a response go-imap could not parse while the connection itself was sound:
// the server will send the same again, so it is permanent. go-imap closes the connection on it.
type ProtocolError struct {
	Err error
}

func (e *ProtocolError) Error() string {
	return "the server sent a response this client cannot parse: " + e.Err.Error()
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// IsProtocol reports whether err is, or wraps, a *ProtocolError.
func IsProtocol(err error) bool {
	var pe *ProtocolError
	return errors.As(err, &pe)
}

// repeatable reports whether a failure that broke the connection will happen again on a new one,
// wrapping a parse failure as a *ProtocolError. A failure is a parse failure when go-imap gave up
// without the socket itself failing (the frame reader sees every socket error).
func (c *Conn) repeatable(err *error) bool {
	var (
		le *LimitError
		te *TooLargeError
	)
	if errors.As(*err, &le) || errors.As(*err, &te) || IsProtocol(*err) {
		return true
	}
	if c.frames == nil || c.frames.socketErr() != nil {
		return false
	}
	*err = &ProtocolError{Err: *err}
	return true
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// framedConn is the connection go-imap reads: the socket (after TLS) seen through a frameReader.
type framedConn struct {
	net.Conn
	frames *frameReader
}

func (c framedConn) Read(p []byte) (int, error) { return c.frames.Read(p) }

// frameReader follows IMAP's framing between the socket and go-imap: lines, and the literals
// announced at their ends. It parses nothing else. It
//
//   - counts every byte of a response outside message bodies and fails the connection when one
//     response passes Limits.MaxResponseSize (a literal announced too large is refused before a
//     byte of it is read);
//   - passes message bodies (the BODY[], BINARY[] and RFC822 literals of a FETCH) through
//     uncounted and unbuffered: FetchBodies bounds them;
//   - respells, in LIST, LSUB and STATUS responses, a mailbox name that is not valid modified
//     UTF-7 (a bare "&" is common on non-compliant servers) so that go-imap, which would fail the
//     whole response and the connection on it, reads the name's raw characters instead; rawName
//     is told which names those are.
//
// go-imap reads it from one goroutine at a time (its reader, or the consumer of a body literal),
// so it needs no lock; only the socket error is read from elsewhere.
type frameReader struct {
	br      *bufio.Reader
	max     int64
	trip    func(error)       // closes the connection; called once, when a limit is passed
	rawName func(name string) // a respelled name, as go-imap will report it

	out    []byte // bytes ready for go-imap
	buf    []byte // backing store of out, reused
	lit    int64  // bytes of the current literal still to pass through
	body   bool   // the current literal is a message body
	resp   int64  // bytes of the current response so far, bodies aside
	inResp bool   // a response has begun and not ended (a literal ended its last line)
	fetch  bool   // the current response is a FETCH
	err    error  // sticky

	mu      sync.Mutex
	sockErr error
}

func newFrameReader(sock io.Reader, max int64, trip func(error), rawName func(string)) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(sock, 32<<10), max: max, trip: trip, rawName: rawName}
}

func (f *frameReader) socketErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sockErr
}

// fromSocket records an error of the socket itself and makes it sticky.
func (f *frameReader) fromSocket(err error) error {
	f.mu.Lock()
	if f.sockErr == nil {
		f.sockErr = err
	}
	f.mu.Unlock()
	f.err = err
	return err
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.out) == 0 && f.lit == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if err := f.next(); err != nil && len(f.out) == 0 {
			return 0, err
		}
	}
	if len(f.out) > 0 {
		n := copy(p, f.out)
		f.out = f.out[n:]
		return n, nil
	}
	if int64(len(p)) > f.lit {
		p = p[:f.lit]
	}
	n, err := f.br.Read(p)
	f.lit -= int64(n)
	if !f.body {
		f.resp += int64(n) // announced sizes were checked against the budget already
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, f.fromSocket(err)
	}
	return n, nil
}

// next reads the next line (or, for a response whose mailbox name may need respelling, the
// whole response) into out.
func (f *frameReader) next() error {
	start := !f.inResp
	if start {
		f.resp, f.fetch = 0, false
	}
	f.buf = f.buf[:0]
	line, err := f.readLine(f.buf)
	if err != nil {
		f.out = line
		return err
	}
	if start && namesMailbox(line) {
		return f.wholeResponse(line)
	}
	if start {
		f.fetch = isFetch(line)
	}
	f.buf, f.out = line, line
	size, ok := literalAt(line)
	if !ok {
		f.inResp = false
		return nil
	}
	f.inResp = true
	f.body = f.fetch && isBodyItem(line)
	if !f.body && size > f.max-f.resp {
		return f.tooLarge("a literal of " + bytesText(size))
	}
	f.lit = size
	return nil
}

// readLine appends one line, CRLF included, to dst, within the response budget.
func (f *frameReader) readLine(dst []byte) ([]byte, error) {
	n := len(dst)
	for {
		chunk, err := f.br.ReadSlice('\n')
		if f.resp+int64(len(dst)-n+len(chunk)) > f.max {
			return dst[:n], f.tooLarge("a line")
		}
		dst = append(dst, chunk...)
		switch err {
		case nil:
			f.resp += int64(len(dst) - n)
			return dst, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(dst) > n {
				// The rest of a line, then the end: go-imap sees the bytes, then the error.
				_ = f.fromSocket(io.ErrUnexpectedEOF) // recorded for the next Read; this one returns the bytes
				return dst, nil
			}
			return dst, f.fromSocket(io.EOF)
		default:
			return dst, f.fromSocket(err)
		}
	}
}

// wholeResponse buffers a LIST, LSUB or STATUS response, literals included, and respells its
// mailbox name if go-imap could not decode it.
func (f *frameReader) wholeResponse(first []byte) error {
	resp := first
	for {
		size, ok := literalAt(resp)
		if !ok {
			break
		}
		if size > f.max-f.resp {
			return f.tooLarge("a literal of " + bytesText(size) + " in a LIST or STATUS response")
		}
		at := len(resp)
		resp = append(resp, make([]byte, size)...)
		if n, err := io.ReadFull(f.br, resp[at:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			f.out = resp[:at+n] // what came, then the error
			return f.fromSocket(err)
		}
		f.resp += size
		var err error
		if resp, err = f.readLine(resp); err != nil {
			f.out = resp
			return err
		}
	}
	f.inResp = false
	fixed, name, changed := respell(resp)
	if changed {
		f.rawName(name)
		resp = fixed
	}
	f.buf, f.out = resp, resp
	return nil
}

func (f *frameReader) tooLarge(what string) error {
	err := &LimitError{What: fmt.Sprintf("sent %s, more than the maximum response size of %s outside message bodies",
		what, bytesText(f.max))}
	f.err = err
	f.trip(err)
	return err
}

// literalAt returns the size of the literal a line announces at its end ("{123}\r\n", "{123+}",
// "~{123}"), if it does.
func literalAt(line []byte) (int64, bool) {
	line, complete := bytes.CutSuffix(line, []byte("\n"))
	if !complete {
		return 0, false // the end of the stream, mid-line: nothing follows
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	size, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || size < 0 {
		// Not a number go-imap can take either: it will refuse the response. A number too long
		// for int64 is treated as the largest one, so it is refused as too large.
		if len(digits) > 0 && allDigits(digits) {
			return 1<<63 - 1, true
		}
		return 0, false
	}
	return size, true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isFetch reports whether a response's first line is "* n FETCH".
func isFetch(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("* "))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	return i > 0 && hasPrefixFold(rest[i:], " FETCH ")
}

// isBodyItem reports whether the literal at the end of a FETCH line is a message body: the
// value of BODY[...], BINARY[...] (either with a <partial> origin) or RFC822[.TEXT|.HEADER].
func isBodyItem(line []byte) bool {
	open := bytes.LastIndexByte(line, '{')
	item := bytes.TrimRight(line[:open], " ~")
	if bytes.HasSuffix(item, []byte(">")) {
		if lt := bytes.LastIndexByte(item, '<'); lt >= 0 {
			item = item[:lt]
		}
	}
	if bytes.HasSuffix(item, []byte("]")) {
		lb := bytes.LastIndexByte(item, '[')
		if lb < 0 {
			return false
		}
		name := strings.ToUpper(string(item[max(0, lb-6):lb]))
		return strings.HasSuffix(name, "BODY") || strings.HasSuffix(name, "BINARY")
	}
	word := item[bytes.LastIndexAny(item, " (")+1:]
	switch strings.ToUpper(string(word)) {
	case "RFC822", "RFC822.TEXT", "RFC822.HEADER":
		return true
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// namesMailbox reports whether a response's first line is a LIST, LSUB or STATUS response.
func namesMailbox(line []byte) bool {
	return hasPrefixFold(line, "* LIST ") || hasPrefixFold(line, "* LSUB ") || hasPrefixFold(line, "* STATUS ")
}

// respell returns resp with its mailbox name replaced by a modified UTF-7 spelling of the raw
// name's characters when the name as sent is not valid modified UTF-7, and that name as go-imap
// will decode it. Anything it does not recognise is left alone for go-imap to judge.
func respell(resp []byte) (fixed []byte, name string, changed bool) {
	i := 0
	switch {
	case hasPrefixFold(resp, "* STATUS "):
		i = len("* STATUS ")
	default: // "* LIST " or "* LSUB ": (attributes) delimiter name
		i = len("* LIST ")
		if i >= len(resp) || resp[i] != '(' {
			return nil, "", false
		}
		end := bytes.IndexByte(resp[i:], ')')
		if end < 0 {
			return nil, "", false
		}
		i += end + 1
		if i >= len(resp) || resp[i] != ' ' {
			return nil, "", false
		}
		i++
		switch {
		case hasPrefixFold(resp[i:], "NIL"):
			i += 3
		case bytes.HasPrefix(resp[i:], []byte(`"\`)):
			i += 4
		case bytes.HasPrefix(resp[i:], []byte(`"`)):
			i += 3
		default:
			return nil, "", false
		}
		if i >= len(resp) || resp[i] != ' ' {
			return nil, "", false
		}
		i++
	}
	raw, end, ok := astring(resp, i)
	if !ok || strings.EqualFold(raw, "INBOX") {
		return nil, "", false
	}
	if _, err := mutf7.Decode(raw); err == nil {
		return nil, "", false
	}
	name = strings.ToValidUTF8(raw, "\uFFFD")
	spelled := mutf7.Encode(name)
	var b bytes.Buffer
	b.Write(resp[:i])
	b.WriteByte('"')
	for j := 0; j < len(spelled); j++ {
		if spelled[j] == '"' || spelled[j] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(spelled[j])
	}
	b.WriteByte('"')
	b.Write(resp[end:])
	return b.Bytes(), name, true
}

// astring reads an atom, a quoted string or a literal at resp[i:], and returns its value and
// where it ends.
func astring(resp []byte, i int) (string, int, bool) {
	if i >= len(resp) {
		return "", 0, false
	}
	switch resp[i] {
	case '"':
		var sb strings.Builder
		for j := i + 1; j < len(resp); j++ {
			switch resp[j] {
			case '\\':
				if j+1 >= len(resp) {
					return "", 0, false
				}
				j++
				sb.WriteByte(resp[j])
			case '"':
				return sb.String(), j + 1, true
			case '\r', '\n':
				return "", 0, false
			default:
				sb.WriteByte(resp[j])
			}
		}
		return "", 0, false
	case '{':
		close := bytes.IndexByte(resp[i:], '}')
		if close < 0 {
			return "", 0, false
		}
		size, err := strconv.Atoi(strings.TrimSuffix(string(resp[i+1:i+close]), "+"))
		start := i + close + 1
		if err != nil || !bytes.HasPrefix(resp[start:], []byte("\r\n")) {
			return "", 0, false
		}
		start += 2
		if size < 0 || start+size > len(resp) {
			return "", 0, false
		}
		return string(resp[start : start+size]), start + size, true
	}
	j := i
	for j < len(resp) && resp[j] != ' ' && resp[j] != '\r' && resp[j] != '\n' && resp[j] != '(' && resp[j] != ')' {
		j++
	}
	if j == i {
		return "", 0, false
	}
	return string(resp[i:j]), j, true
}

// searchUIDs expands a SEARCH answer, refusing one that names absurdly many UIDs or "*" (which
// go-imap would expand, or panic on).
func searchUIDs(data *imap.SearchData) ([]imap.UID, error) {
	set, ok := data.All.(imap.UIDSet)
	if !ok {
		return nil, nil
	}
	if set.Dynamic() {
		return nil, &ProtocolError{Err: errors.New(`SEARCH answer with "*" in its UID set`)}
	}
	var n uint64
	for _, r := range set {
		lo, hi := min(r.Start, r.Stop), max(r.Start, r.Stop)
		n += uint64(hi-lo) + 1
	}
	if n > maxSearchUIDs {
		return nil, &LimitError{What: fmt.Sprintf("answered a SEARCH with %d UIDs, more than %d in one folder", n, maxSearchUIDs)}
	}
	return data.AllUIDs(), nil
}

// framed returns the connection go-imap reads: conn for writes and deadlines, r (conn's
// plaintext) through a frame reader for reads.
func (c *Conn) framed(conn net.Conn, r io.Reader) net.Conn {
	c.frames = newFrameReader(r, c.cfg.Limits.MaxResponseSize, c.abort, c.noteRawName)
	return framedConn{Conn: conn, frames: c.frames}
}

func (c *Conn) noteRawName(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rawNames == nil {
		c.rawNames = map[string]bool{}
	}
	c.rawNames[name] = true
}

func (c *Conn) isRawName(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rawNames[name]
}

// bound arms g's total deadline.
func (c *Conn) bound(g *guard) {
	d := c.cfg.Limits.CommandDeadline
	g.deadline = time.AfterFunc(d, func() {
		c.abort(fmt.Errorf("%w: the command did not finish within %s (the command deadline)", errTimeout, d))
	})
}

// unbounded lifts the total deadline, for commands whose length is the data's (a body fetch) or
// the caller's (IDLE); the no-progress timeout still applies.
func (g *guard) unbounded() {
	if g.deadline != nil {
		g.deadline.Stop()
	}
}
