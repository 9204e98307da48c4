package imapconn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Message is one message of the selected folder, with its exact bytes.
type Message struct {
	UID          uint32
	Flags        []string // as the server sent them, e.g. \Seen, $Forwarded; never \Recent
	Size         int64    // RFC822.SIZE
	InternalDate time.Time
	ModSeq       uint64 // 0 without CONDSTORE
	Raw          []byte // the message exactly as sent; owned by the receiver
}

// FlagUpdate is the flag state of one message.
type FlagUpdate struct {
	UID    uint32
	Flags  []string
	ModSeq uint64 // 0 without CONDSTORE
}

// SearchAllUIDs returns every UID of the selected folder, ascending (UID SEARCH ALL; with ESEARCH
// the answer comes as compact ranges).
func (c *Conn) SearchAllUIDs(ctx context.Context) ([]uint32, error) {
	op := fmt.Sprintf("search all UIDs of %q", c.selected())
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	var opts *imap.SearchOptions
	if c.caps.ESearch || c.caps.IMAP4rev2 {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	data, err := c.client.UIDSearch(&imap.SearchCriteria{}, opts).Wait()
	if err := c.end(g, op, err); err != nil {
		return nil, err
	}
	all, err := searchUIDs(data)
	if err != nil {
		return nil, &Error{Op: op, Class: ClassPermanent, Err: err}
	}
	uids := make([]uint32, len(all))
	for i, uid := range all {
		uids[i] = uint32(uid)
	}
	slices.Sort(uids)
	return uids, nil
}

// FetchBodies fetches UID, FLAGS, RFC822.SIZE, INTERNALDATE (MODSEQ with CONDSTORE) and the whole
// body (BODY.PEEK[], so \Seen is untouched) of the messages of uids in the selected folder, and
// calls fn for each as it arrives, in server order. Only one body is in memory at a time, read
// from the socket straight into its own slice, which fn may keep.
//
// If fn returns an error, FetchBodies closes the connection at once and returns that error:
// draining the rest of a large fetch would cost more than dialling again.
//
// A body announced larger than Limits.MaxMessageSize is not read: the connection is closed and
// FetchBodies returns an *Error wrapping a *TooLargeError that names the message. Bodies are
// read in chunks as they arrive, so an announced size is never an allocation.
func (c *Conn) FetchBodies(ctx context.Context, uids UIDSet, fn func(Message) error) error {
	return c.FetchBodiesAdmitting(ctx, uids, nil, fn)
}

// FetchBodiesAdmitting is FetchBodies with a gate: admit, when not nil, is called with each
// body's announced size (at most Limits.MaxMessageSize) before a byte of it is read, and may
// block until the caller has room for it (the command's no-progress clock is paused meanwhile).
// An error from admit ends the fetch like one from fn.
func (c *Conn) FetchBodiesAdmitting(ctx context.Context, uids UIDSet, admit func(size int64) error, fn func(Message) error) error {
	op := fmt.Sprintf("fetch bodies %s of %q", uids, c.selected())
	g, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	g.unbounded() // a fetch lasts as long as its data; the clock restarts at every message
	gate := func(uid uint32, size int64) error {
		if size > c.cfg.Limits.MaxMessageSize {
			if uid == 0 && uids.single() != 0 {
				uid = uids.single()
			}
			return &TooLargeError{UID: uid, Size: size, Limit: c.cfg.Limits.MaxMessageSize}
		}
		if admit == nil {
			return nil
		}
		g.pause()
		err := admit(size)
		g.progress()
		if err != nil {
			return &admitError{err}
		}
		return nil
	}
	cmd := c.client.Fetch(uids.imap(), &imap.FetchOptions{
		UID:          true,
		Flags:        true,
		RFC822Size:   true,
		InternalDate: true,
		ModSeq:       c.caps.CondStore,
		BodySection:  []*imap.FetchItemBodySection{{Peek: true}},
	})
	for data := cmd.Next(); data != nil; data = cmd.Next() {
		msg, err := readMessage(data, gate)
		if err != nil {
			g.disarm()
			// A body refused before a byte of it was read is still the reader goroutine's to
			// hand over: close the socket, then release the command, which discards what is
			// left of it (abandon would wait for a goroutine that waits for us).
			var (
				ae  *admitError
				big *TooLargeError
			)
			switch {
			case errors.As(err, &ae):
				c.abort(fmt.Errorf("fetch abandoned: %w", ae.err))
				cmd.Close()
				return ae.err
			case errors.As(err, &big):
				c.abort(err)
				cmd.Close()
				return c.fail(op, err)
			}
			// The body could not be read: the connection is broken.
			c.abandon(cmd, err)
			return c.fail(op, err)
		}
		if !uids.contains(msg.UID) {
			// "N:*" with N above every UID still returns the last message. Not progress: a
			// server streaming messages nobody asked for is cut by the no-progress timeout.
			continue
		}
		g.progress()
		g.pause() // the consumer's time is not the server's silence
		err = fn(msg)
		g.progress()
		if err != nil {
			// The connection is healthy but the caller wants no more: cut it rather than drain.
			g.disarm()
			c.abort(fmt.Errorf("fetch abandoned: %w", err))
			cmd.Close() // hands the rest of the buffered response to go-imap's reader, which then fails
			return err
		}
	}
	return c.end(g, op, cmd.Close())
}

// admitError carries the caller's own error out of readMessage.
type admitError struct{ err error }

func (e *admitError) Error() string { return e.err.Error() }

// bodyChunk is the most a body buffer grows by at once, whatever size was announced.
const bodyChunk = 1 << 20

// readBody reads a literal of the announced size (already checked against the maximum message
// size). The buffer starts at one chunk and takes the announced size only once that chunk has
// arrived: a server that announces much and sends little costs little, and a large body that does
// arrive is copied once, not grown by doubling (which would hold it one and a half times over).
func readBody(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, 0, min(size, bodyChunk))
	for int64(len(buf)) < size {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF && int64(len(buf)) < size {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
	}
	return buf, nil
}

// readMessage reads every item of one FETCH response. The body literal must be read before the
// next item: it is a reader on the socket. gate sees each body's size before it is read.
func readMessage(data *imapclient.FetchMessageData, gate func(uid uint32, size int64) error) (Message, error) {
	var msg Message
	for item := data.Next(); item != nil; item = data.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			msg.UID = uint32(item.UID)
		case imapclient.FetchItemDataFlags:
			msg.Flags = flagStrings(item.Flags)
		case imapclient.FetchItemDataRFC822Size:
			msg.Size = item.Size
		case imapclient.FetchItemDataInternalDate:
			msg.InternalDate = item.Time
		case imapclient.FetchItemDataModSeq:
			msg.ModSeq = item.ModSeq
		case imapclient.FetchItemDataBodySection:
			if item.Literal == nil {
				msg.Raw = []byte{} // NIL body: keep "present but empty" distinct from "not sent"
				continue
			}
			if err := gate(msg.UID, item.Literal.Size()); err != nil {
				return msg, err
			}
			raw, err := readBody(item.Literal, item.Literal.Size())
			if err != nil {
				return msg, fmt.Errorf("reading body of UID %d: %w", msg.UID, err)
			}
			msg.Raw = raw
		}
	}
	if msg.Raw == nil {
		return msg, fmt.Errorf("server sent no body for message %d (UID %d)", data.SeqNum, msg.UID)
	}
	return msg, nil
}

// FetchFlags returns UID, FLAGS (and MODSEQ with CONDSTORE) of the messages of uids in the
// selected folder. With changedSince > 0 (CONDSTORE only) it returns only the messages whose
// flags changed after that mod-sequence.
func (c *Conn) FetchFlags(ctx context.Context, uids UIDSet, changedSince uint64) ([]FlagUpdate, error) {
	op := fmt.Sprintf("fetch flags %s of %q", uids, c.selected())
	if changedSince > 0 {
		op += fmt.Sprintf(" changed since %d", changedSince)
	}
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	cmd := c.client.Fetch(uids.imap(), &imap.FetchOptions{
		UID:          true,
		Flags:        true,
		ModSeq:       c.caps.CondStore || changedSince > 0,
		ChangedSince: changedSince,
	})
	var updates []FlagUpdate
	// go-imap hands a command each UID of its set once; repeats and UIDs nobody asked for go to
	// the unilateral handler, and make no progress here.
	for data := cmd.Next(); data != nil; data = cmd.Next() {
		var u FlagUpdate
		for item := data.Next(); item != nil; item = data.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				u.UID = uint32(item.UID)
			case imapclient.FetchItemDataFlags:
				u.Flags = flagStrings(item.Flags)
			case imapclient.FetchItemDataModSeq:
				u.ModSeq = item.ModSeq
			}
		}
		g.progress()
		if uids.contains(u.UID) {
			updates = append(updates, u)
		}
	}
	if err := c.end(g, op, cmd.Close()); err != nil {
		return nil, err
	}
	return updates, nil
}

// flagStrings converts flags, leaving out \Recent: it describes the session (the first one to
// see a message gets it), not the message, and keeping it would make every sync see a change.
func flagStrings(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	return out
}

// Summary is what the server says of a message short of its body: enough to tell whether a
// stored copy is still this message with these flags.
type Summary struct {
	UID          uint32
	Flags        []string
	Size         int64 // RFC822.SIZE
	InternalDate time.Time
}

// FetchSummaries returns UID, FLAGS, RFC822.SIZE and INTERNALDATE of the messages of uids in the
// selected folder, ascending by UID. It costs one round trip and a few dozen bytes per message.
func (c *Conn) FetchSummaries(ctx context.Context, uids UIDSet) ([]Summary, error) {
	op := fmt.Sprintf("fetch sizes and flags %s of %q", uids, c.selected())
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	cmd := c.client.Fetch(uids.imap(), &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, InternalDate: true,
	})
	var out []Summary
	for data := cmd.Next(); data != nil; data = cmd.Next() {
		var s Summary
		for item := data.Next(); item != nil; item = data.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				s.UID = uint32(item.UID)
			case imapclient.FetchItemDataFlags:
				s.Flags = flagStrings(item.Flags)
			case imapclient.FetchItemDataRFC822Size:
				s.Size = item.Size
			case imapclient.FetchItemDataInternalDate:
				s.InternalDate = item.Time
			}
		}
		g.progress()
		if uids.contains(s.UID) {
			out = append(out, s)
		}
	}
	if err := c.end(g, op, cmd.Close()); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(a.UID, b.UID) })
	return out, nil
}
