package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/store"
)

// maxRedials bounds how often in a row the fetch of one folder may dial again without storing or
// skipping a message before the run fails.
const maxRedials = 4

// fetchAll downloads the bodies of set like fetchNew, and survives a connection that breaks in
// the middle: it dials again, selects the folder again, and goes on after the last message it
// committed.
//
// A connection that breaks before a single message could be stored points at the first message
// left. That one is fetched alone, and if it breaks the connection again it is skipped: named in
// the task's final phase, the checkpoint moved past it. go-imap closes the connection on any
// response it cannot parse, so without this one such message would fail every sync of the
// account at the same place, for ever. force_full tries it again.
//
// It returns how many messages it stored.
func (a *accountSync) fetchAll(ctx context.Context, name string, set imapconn.UIDSet, cur *cursor, sel imapconn.Status) (int, error) {
	total, redials := 0, 0
	for len(set) > 0 {
		n, last, err := a.fetchNew(ctx, name, set, cur)
		total += n
		if n > 0 {
			set, redials = after(set, last), 0 // progress: the budget is for redials that achieve nothing
		}
		if err == nil {
			return total, nil
		}
		var big *imapconn.TooLargeError
		tooLarge := errors.As(err, &big) && big.UID != 0
		if err := a.redial(ctx, name, sel, err, &redials); err != nil {
			return total, err
		}
		if tooLarge {
			// Announced above the maximum message size: never read, skipped at once.
			if err := a.skipMessage(ctx, name, big.UID, big, cur); err != nil {
				return total, err
			}
			set, redials = after(set, big.UID), 0
			continue
		}
		if n > 0 {
			continue
		}
		first, ok, err := a.firstUID(ctx, name, set)
		if err != nil || !ok {
			return total, err
		}
		a.log.Info("fetching alone the message a broken connection points at", "folder", name, "uid", first)
		n, _, err = a.fetchNew(ctx, name, imapconn.UIDs(first), cur)
		total += n
		set = after(set, first)
		if err == nil {
			continue
		}
		if err := a.redial(ctx, name, sel, err, &redials); err != nil {
			return total, err
		}
		if err := a.skipMessage(ctx, name, first, err, cur); err != nil {
			return total, err
		}
		redials = 0
	}
	return total, nil
}

// redial replaces a connection that broke with a new one on the same folder, or returns the
// error to end the run with: cause itself when it is not a broken IMAP connection, when the run
// was stopped, or when the folder has redialled too often. A server that stopped answering (the
// command timeout) is not dialled again: that would only add a dial timeout to the wait before
// the task says so, and the next sync resumes from the checkpoints anyway.
func (a *accountSync) redial(ctx context.Context, name string, sel imapconn.Status, cause error, redials *int) error {
	var ie *imapconn.Error
	if ctx.Err() != nil || !errors.As(cause, &ie) || *redials >= maxRedials || imapconn.IsTimeout(cause) {
		return cause
	}
	var big *imapconn.TooLargeError
	if ie.Class != imapconn.ClassTransient && !imapconn.IsProtocol(cause) && !errors.As(cause, &big) {
		return cause
	}
	*redials++
	a.log.Warn("connection broke during a fetch: dialling again", "folder", name, "err", cause)
	a.conn.Close()
	conn, err := imapconn.Dial(ctx, a.cfg)
	if err != nil {
		return fmt.Errorf("%w; dialling again: %v", cause, a.public(err)) // a.conn stays, closed
	}
	a.conn = conn
	again, err := conn.Select(ctx, name, conn.Caps().CondStore)
	if err != nil {
		return fmt.Errorf("%w; selecting again: %v", cause, err)
	}
	if again.UIDValidity != sel.UIDValidity {
		return fmt.Errorf("syncer: folder %q: UIDVALIDITY changed during the sync (%d, now %d): the next sync starts it again",
			name, sel.UIDValidity, again.UIDValidity)
	}
	if again.MailboxID != sel.MailboxID {
		return fmt.Errorf("syncer: folder %q: MAILBOXID changed during the sync (%q, now %q): the next sync starts it again",
			name, sel.MailboxID, again.MailboxID)
	}
	return nil
}

// firstUID returns the lowest UID of set that the selected folder holds.
func (a *accountSync) firstUID(ctx context.Context, name string, set imapconn.UIDSet) (uint32, bool, error) {
	all, err := a.serverUIDs(ctx, name)
	if err != nil {
		return 0, false, err
	}
	for _, uid := range all {
		if inSet(set, uid) {
			return uid, true, nil
		}
	}
	return 0, false, nil
}

// skipMessage gives up on one message that cannot be fetched, and moves the checkpoint past it.
func (a *accountSync) skipMessage(ctx context.Context, name string, uid uint32, cause error, cur *cursor) error {
	var big *imapconn.TooLargeError
	if errors.As(cause, &big) {
		a.log.Warn("message skipped: above the maximum message size", "folder", name, "uid", uid, "size", big.Size, "limit", big.Limit)
		a.skipped = append(a.skipped, fmt.Sprintf("message UID %d of %q: %v", uid, name, big.Why()))
	} else {
		a.log.Warn("message skipped: fetching it breaks the connection", "folder", name, "uid", uid, "err", cause)
		a.skipped = append(a.skipped, fmt.Sprintf("message UID %d of %q: %v", uid, name, cause))
	}
	a.p.MessagesDone++
	a.p.MessagesTotal = max(a.p.MessagesTotal, a.p.MessagesDone)
	if uid < cur.folder.UIDNext {
		return nil // below the checkpoint (force_full): nothing to move
	}
	b := store.Batch{Folder: cur.folder, Reset: cur.reset}
	b.Folder.UIDNext = uid + 1
	began := time.Now()
	if _, err := a.s.store.CommitBatch(ctx, a.run.Lease(), a.p, b); err != nil {
		return a.storeFailed(ctx, err)
	}
	cur.folder.UIDNext, cur.reset = uid+1, false
	a.run.Report(a.p)
	a.run.Beat(began)
	return nil
}

// after returns the part of set above uid.
func after(set imapconn.UIDSet, uid uint32) imapconn.UIDSet {
	var out imapconn.UIDSet
	for _, r := range set {
		lo, hi := r.Start, r.Stop
		if hi != 0 && hi < lo {
			lo, hi = hi, lo
		}
		if hi != 0 && hi <= uid {
			continue
		}
		out = append(out, imapconn.UIDRange{Start: max(lo, uid+1), Stop: hi})
	}
	return out
}

// inSet reports whether uid is in set (a Stop of 0 is "*").
func inSet(set imapconn.UIDSet, uid uint32) bool {
	for _, r := range set {
		lo, hi := r.Start, r.Stop
		if hi != 0 && hi < lo {
			lo, hi = hi, lo
		}
		if uid >= lo && (hi == 0 || uid <= hi) {
			return true
		}
	}
	return false
}
