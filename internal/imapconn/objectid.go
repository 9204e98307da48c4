package imapconn

import (
	"bytes"
	"sync"
)

// A folder's MAILBOXID (RFC 8474, OBJECTID) names the folder itself, not its place in the
// hierarchy: it survives a RENAME and changes when a folder is deleted and another takes its name.
// Cyrus keeps UIDVALIDITY across RENAME and hands out equal UIDVALIDITYs to folders created in
// the same second, so without the id "delete A, rename B to A" looks like A unchanged.
//
// go-imap v2 beta.8 knows the OBJECTID capability but nothing else of it: STATUS cannot ask for
// MAILBOXID (its item list is fixed) and its parser drops the SELECT response code
// "* OK [MAILBOXID (id)]" that RFC 8474 §4.2 makes servers send unasked. Asking through STATUS
// would not help anyway: Cyrus 3.6 answers STATUS and LIST-STATUS MAILBOXID with garbage bytes
// (a different "id" each time), and only its SELECT/EXAMINE answer is right. So the id is read
// from the SELECT response: idTap sees the bytes go-imap reads (its Options.DebugWriter tees the
// decrypted stream, TLS or not) and keeps them only while a SELECT is in flight.

// maxTapped bounds what one SELECT may leave in the tap: a SELECT answer is a dozen short lines.
const maxTapped = 64 << 10

// idTap collects what the server sends while armed. go-imap's DebugWriter gets both directions;
// the SELECT command we send is a line starting with our tag, which never looks like the
// untagged response code idFrom looks for.
//
// The tap also reads the [MODIFIED] response code of a conditional STORE (see actions.go), which
// go-imap drops too. A STORE answer has a FETCH line per message, far more than maxTapped for a
// large set, so for it the tap keeps only the lines a filter accepts (armLines).
type idTap struct {
	mu    sync.Mutex
	armed bool
	buf   []byte
	// keep, when set, makes the tap assemble lines and keep only those it accepts; part is the
	// line in progress, long says it passed maxTapped and is being skipped.
	keep func(line []byte) bool
	part []byte
	long bool
}

// Write is go-imap's DebugWriter: a no-op unless a command that needs it is in flight.
func (t *idTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.armed:
	case t.keep != nil:
		t.lines(p)
	case len(t.buf)+len(p) <= maxTapped:
		t.buf = append(t.buf, p...)
	}
	return len(p), nil
}

// lines feeds p to the line filter.
func (t *idTap) lines(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		if !t.long && len(t.part)+len(chunk) <= maxTapped {
			t.part = append(t.part, chunk...)
		} else {
			t.long, t.part = true, t.part[:0]
		}
		if i < 0 {
			return
		}
		if !t.long && t.keep(t.part) && len(t.buf)+len(t.part) <= maxTapped {
			t.buf = append(t.buf, t.part...)
		}
		t.part, t.long = t.part[:0], false
	}
}

// armLines arms the tap to keep the whole lines keep accepts, until takeLines.
func (t *idTap) armLines(keep func(line []byte) bool) {
	t.mu.Lock()
	t.armed, t.keep, t.buf, t.part, t.long = true, keep, t.buf[:0], t.part[:0], false
	t.mu.Unlock()
}

// takeLines disarms the tap and returns a copy of the lines kept since armLines.
func (t *idTap) takeLines() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := bytes.Clone(t.buf)
	t.armed, t.keep, t.buf, t.part = false, nil, t.buf[:0], t.part[:0]
	if cap(t.part) > 4<<10 {
		t.part = nil
	}
	return out
}

func (t *idTap) arm() {
	t.mu.Lock()
	t.armed, t.keep, t.buf = true, nil, t.buf[:0]
	t.mu.Unlock()
}

// take disarms the tap and returns the MAILBOXID seen since arm, "" when none.
func (t *idTap) take() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.armed = false
	id := mailboxIDFrom(t.buf)
	t.buf = t.buf[:0]
	if cap(t.buf) > 4<<10 {
		t.buf = nil // do not keep a large buffer for the connection's lifetime
	}
	return id
}

// mailboxIDFrom finds the last "* OK [MAILBOXID (id)]" response code at the start of a line of
// data and returns id, or "" when there is none or it is not a valid objectid (1 to 255 of
// ALPHA / DIGIT / "_" / "-", RFC 8474 §7).
func mailboxIDFrom(data []byte) string {
	const code = "* OK [MAILBOXID ("
	id := ""
	for line := range bytes.Lines(data) {
		if len(line) < len(code) || !bytes.EqualFold(line[:len(code)], []byte(code)) {
			continue
		}
		rest := line[len(code):]
		end := bytes.IndexByte(rest, ')')
		if end < 1 || end > 255 || !bytes.HasPrefix(rest[end:], []byte(")]")) || !objectID(rest[:end]) {
			continue
		}
		id = string(rest[:end])
	}
	return id
}

func objectID(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
