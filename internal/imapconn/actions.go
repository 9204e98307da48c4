package imapconn

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Actions on mail: flags, move, delete, append. Every write selects its folder read-write first,
// so after one the selected folder is the one written to (a later Select still opens any folder
// read-only, and FetchFlags and friends work on whatever was selected last).
//
// A NO or BAD answer is an *Error of class ClassPermanent (ClassThrottled or ClassTransient when
// the answer says so), whose text carries the server's words; IsNoSuchFolder tells a missing
// folder from other refusals.

// selection is the folder the server has selected for this connection, and in which mode.
type selection struct {
	name string
	rw   bool
}

// open makes folder the selected one: read-write when rw, else in either mode. It sends a
// SELECT (or EXAMINE) only when needed: writes to one folder in a row cost one.
func (c *Conn) open(ctx context.Context, folder string, rw bool) error {
	if c.sel.name == folder && (c.sel.rw || !rw) && c.selected() == folder {
		return nil
	}
	op := fmt.Sprintf("select %q", folder)
	if rw {
		op += " for writing"
	}
	g, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	c.sel = selection{}
	_, err = c.client.Select(folder, &imap.SelectOptions{ReadOnly: !rw, CondStore: c.caps.CondStore}).Wait()
	if err := c.end(g, op, err); err != nil {
		return noteMissing(err)
	}
	c.sel = selection{name: folder, rw: rw}
	return nil
}

// IsNoSuchFolder reports whether err says that a folder does not exist: a NO with the
// [TRYCREATE] (COPY, MOVE, APPEND to a missing folder) or [NONEXISTENT] response code, or a
// failed SELECT whose answer says the folder does not exist. For Move the folder may be the
// source or the destination: the error's Op names it.
func IsNoSuchFolder(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.noSuchFolder {
		return true
	}
	var se *imap.Error
	return errors.As(err, &se) && se.Type == imap.StatusResponseTypeNo &&
		(se.Code == imap.ResponseCodeTryCreate || se.Code == imap.ResponseCodeNonExistent)
}

// noteMissing marks the error of a failed SELECT as IsNoSuchFolder when the server, without a
// response code, said in words that the folder does not exist (servers older than RFC 5530).
func noteMissing(err error) error {
	var (
		e  *Error
		se *imap.Error
	)
	if !errors.As(err, &e) || !errors.As(err, &se) || se.Type != imap.StatusResponseTypeNo || se.Code != "" {
		return err
	}
	text := strings.ToLower(se.Text)
	for _, w := range [...]string{"not exist", "n't exist", "no such", "nonexistent", "not found", "unknown mailbox"} {
		if strings.Contains(text, w) {
			e.noSuchFolder = true
			break
		}
	}
	return err
}

// errNoUIDPlus refuses a removal the server cannot scope to our UIDs.
var errNoUIDPlus = errors.New("the server has no UIDPLUS (RFC 4315), so messages cannot be expunged by UID; " +
	"a plain EXPUNGE would also remove every other message marked \\Deleted in the folder")

// StoreResult is the outcome of StoreFlags.
type StoreResult struct {
	// Modified are the UIDs the server refused to change because they changed after the
	// mod-sequence given (RFC 7162 [MODIFIED]), ascending. They were not changed.
	Modified []uint32
}

// StoreFlags adds and removes flags of the messages of uids in folder, as deltas (UID STORE
// +FLAGS.SILENT, then -FLAGS.SILENT; never an absolute set, so a flag another client set
// meanwhile survives). Messages already gone are skipped by the server, without error.
//
// With unchangedSince > 0 and CONDSTORE the change is conditional (UNCHANGEDSINCE): a message
// whose MODSEQ passed unchangedSince is left alone and listed in Modified. Without CONDSTORE
// (see Caps) unchangedSince is ignored. When both add and remove are given the second command is
// conditional on the mod-sequence the first one produced; a message changed by someone else
// between the two commands keeps the added flags and is listed in Modified.
func (c *Conn) StoreFlags(ctx context.Context, folder string, uids UIDSet, add, remove []string, unchangedSince uint64) (StoreResult, error) {
	var res StoreResult
	if len(uids) == 0 || len(add)+len(remove) == 0 {
		return res, nil
	}
	since := unchangedSince
	if !c.caps.CondStore {
		since = 0
	}
	if err := c.open(ctx, folder, true); err != nil {
		return res, err
	}
	rest := uids
	if len(add) > 0 {
		modified, top, err := c.store(ctx, folder, uids, imap.StoreFlagsAdd, add, since)
		if err != nil {
			return res, err
		}
		res.Modified = modified
		if since > 0 {
			// Any change made after our STORE has a higher MODSEQ than those it assigned.
			since = max(since, top)
		}
		rest = uids.without(modified)
	}
	if len(remove) > 0 && len(rest) > 0 {
		modified, _, err := c.store(ctx, folder, rest, imap.StoreFlagsDel, remove, since)
		if err != nil {
			return res, err
		}
		res.Modified = slices.Compact(slices.Sorted(slices.Values(append(res.Modified, modified...))))
	}
	return res, nil
}

// store sends one UID STORE to the selected folder and returns the UIDs refused as [MODIFIED]
// and the highest MODSEQ reported for the messages changed.
func (c *Conn) store(ctx context.Context, folder string, uids UIDSet, kind imap.StoreFlagsOp, flags []string, since uint64) (modified []uint32, top uint64, err error) {
	sign := "+"
	if kind == imap.StoreFlagsDel {
		sign = "-"
	}
	op := fmt.Sprintf("store %sFLAGS (%s) on %s of %q", sign, strings.Join(flags, " "), uids, folder)
	if since > 0 {
		op += fmt.Sprintf(" unchanged since %d", since)
	}
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, 0, err
	}
	if since > 0 {
		c.tap.armLines(isModifiedLine)
	}
	cmd := c.client.Store(uids.imap(), &imap.StoreFlags{Op: kind, Silent: true, Flags: imapFlags(flags)},
		&imap.StoreOptions{UnchangedSince: since})
	for data := cmd.Next(); data != nil; data = cmd.Next() {
		var (
			uid    uint32
			modSeq uint64
		)
		for item := data.Next(); item != nil; item = data.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(item.UID)
			case imapclient.FetchItemDataModSeq:
				modSeq = item.ModSeq
			}
		}
		g.progress()
		if uids.contains(uid) {
			top = max(top, modSeq)
		}
	}
	err = cmd.Close()
	var lines []byte
	if since > 0 {
		lines = c.tap.takeLines()
	}
	var se *imap.Error
	if errors.As(err, &se) && strings.EqualFold(string(se.Code), "MODIFIED") {
		err = nil // RFC 7162 allows NO [MODIFIED] for a STORE that changed nothing
	}
	if err := c.end(g, op, err); err != nil {
		return nil, 0, err
	}
	if since == 0 {
		return nil, top, nil
	}
	modified, err = modifiedFrom(lines, uids)
	if err != nil {
		return nil, 0, c.seal(&Error{Op: op, Class: ClassPermanent, Err: err})
	}
	return modified, top, nil
}

// isModifiedLine accepts a tagged status response with the MODIFIED code: "T7 OK [MODIFIED 3,5]".
func isModifiedLine(line []byte) bool {
	tag, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(tag) == 0 || tag[0] == '*' || tag[0] == '+' {
		return false
	}
	return hasPrefixFold(rest, "OK [MODIFIED ") || hasPrefixFold(rest, "NO [MODIFIED ")
}

// modifiedFrom reads the UID set of the [MODIFIED] codes in lines, keeping the UIDs of uids.
func modifiedFrom(lines []byte, uids UIDSet) ([]uint32, error) {
	var out []uint32
	for line := range bytes.Lines(lines) {
		_, rest, _ := bytes.Cut(line, []byte(" "))
		set, _, ok := bytes.Cut(rest[len("OK [MODIFIED "):], []byte("]"))
		if !ok {
			return nil, &ProtocolError{Err: fmt.Errorf("unterminated MODIFIED response code %q", line)}
		}
		var n int
		for part := range strings.SplitSeq(string(set), ",") {
			lo, hi, isRange := strings.Cut(part, ":")
			start, err1 := strconv.ParseUint(lo, 10, 32)
			stop := start
			var err2 error
			if isRange {
				stop, err2 = strconv.ParseUint(hi, 10, 32)
			}
			if err1 != nil || err2 != nil || start == 0 || stop == 0 {
				return nil, &ProtocolError{Err: fmt.Errorf("bad UID set in MODIFIED response code %q", set)}
			}
			if stop < start {
				start, stop = stop, start
			}
			if n += int(stop-start) + 1; n > maxSearchUIDs {
				return nil, &LimitError{What: fmt.Sprintf("named more than %d UIDs in a MODIFIED response code", maxSearchUIDs)}
			}
			for uid := start; uid <= stop; uid++ {
				if uids.contains(uint32(uid)) {
					out = append(out, uint32(uid))
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// MoveResult is the outcome of Move: where the messages went, when the server says (RFC 4315
// COPYUID).
type MoveResult struct {
	DestUIDValidity uint32 // 0 when the server did not say
	// Map maps each moved message's UID in the source folder to its UID in dest. It is empty
	// (not nil) when the server did not say, or when none of the UIDs existed any more.
	Map map[uint32]uint32
}

// Move moves the messages of uids from folder to dest: UID MOVE when the server has MOVE, else
// UID COPY, then UID STORE +FLAGS.SILENT (\Deleted) and UID EXPUNGE, which need UIDPLUS (without
// it Move fails without doing anything: a plain EXPUNGE would remove other messages too). A UID
// that no longer exists is not an error: it is just not in Map. Move first asks which of uids
// exist (one UID SEARCH); when none does it sends nothing else and returns an empty result,
// whether dest exists or not.
//
// When the fallback fails after the COPY, the messages are in both folders: the error comes with
// the MoveResult of the copy. Moving again would copy them a second time: a caller that retries
// looks in dest first (SearchHeader by Message-ID) and, when they are there, only Expunges them.
func (c *Conn) Move(ctx context.Context, folder string, uids UIDSet, dest string) (MoveResult, error) {
	res := MoveResult{Map: map[uint32]uint32{}}
	if len(uids) == 0 {
		return res, nil
	}
	op := fmt.Sprintf("move %s of %q to %q", uids, folder, dest)
	if !c.caps.Move && !c.caps.UIDPlus {
		return res, c.seal(&Error{Op: op, Class: ClassPermanent, Err: fmt.Errorf("the server has no MOVE (RFC 6851) and %w", errNoUIDPlus)})
	}
	if err := c.open(ctx, folder, true); err != nil {
		return res, err
	}
	// Only the UIDs still there are moved. go-imap's own server answers a COPY or MOVE of none
	// with a COPYUID of empty sets, which go-imap cannot parse: it would break the connection.
	uids, err := c.existing(ctx, folder, uids)
	if err != nil || len(uids) == 0 {
		return res, err
	}
	if !c.caps.Move {
		return c.copyDelete(ctx, folder, uids, dest)
	}
	g, err := c.begin(ctx, op)
	if err != nil {
		return res, err
	}
	data, err := c.client.Move(uids.imap(), dest).Wait()
	if err := c.end(g, op, err); err != nil {
		return res, err
	}
	src, _ := data.SourceUIDs.(imap.UIDSet)
	dst, _ := data.DestUIDs.(imap.UIDSet)
	c.mapCopy(&res, data.UIDValidity, src, dst)
	return res, nil
}

// existing returns the UIDs of uids that are in the selected folder (UID SEARCH UID).
func (c *Conn) existing(ctx context.Context, folder string, uids UIDSet) (UIDSet, error) {
	op := fmt.Sprintf("search %q for UIDs %s", folder, uids)
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	var opts *imap.SearchOptions
	if c.caps.ESearch || c.caps.IMAP4rev2 {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	data, err := c.client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{uids.imap()}}, opts).Wait()
	if err := c.end(g, op, err); err != nil {
		return nil, err
	}
	all, err := searchUIDs(data)
	if err != nil {
		return nil, c.seal(&Error{Op: op, Class: ClassPermanent, Err: err})
	}
	found := make([]uint32, 0, len(all))
	for _, uid := range all {
		if uids.contains(uint32(uid)) {
			found = append(found, uint32(uid))
		}
	}
	return UIDs(found...), nil
}

// copyDelete is Move without MOVE. Each step waits for the one before: go-imap's own fallback
// pipelines them, and would expunge the messages even when the COPY failed.
func (c *Conn) copyDelete(ctx context.Context, folder string, uids UIDSet, dest string) (MoveResult, error) {
	res := MoveResult{Map: map[uint32]uint32{}}
	op := fmt.Sprintf("copy %s of %q to %q", uids, folder, dest)
	g, err := c.begin(ctx, op)
	if err != nil {
		return res, err
	}
	data, err := c.client.Copy(uids.imap(), dest).Wait()
	if err := c.end(g, op, err); err != nil {
		return res, err
	}
	c.mapCopy(&res, data.UIDValidity, data.SourceUIDs, data.DestUIDs)
	if err := c.deleteUIDs(ctx, folder, uids); err != nil {
		return res, fmt.Errorf("moving %s of %q to %q: copied, but not removed from %q: %w", uids, folder, dest, folder, err)
	}
	return res, nil
}

// mapCopy fills res from a COPYUID response code, whose two sets list the UIDs in the same
// order. A code that does not add up is ignored (logged): the move itself succeeded.
func (c *Conn) mapCopy(res *MoveResult, uidValidity uint32, src, dst imap.UIDSet) {
	if uidValidity == 0 || len(src) == 0 {
		return
	}
	count := func(set imap.UIDSet) uint64 {
		var n uint64
		for _, r := range set {
			n += uint64(max(r.Start, r.Stop)-min(r.Start, r.Stop)) + 1
		}
		return n
	}
	if src.Dynamic() || dst.Dynamic() || count(src) != count(dst) || count(src) > maxSearchUIDs {
		c.log.Debug("imap COPYUID ignored", "src", src.String(), "dst", dst.String())
		return
	}
	from, _ := src.Nums()
	to, _ := dst.Nums()
	res.DestUIDValidity = uidValidity
	for i := range from {
		res.Map[uint32(from[i])] = uint32(to[i])
	}
}

// Expunge removes the messages of uids from folder for good: UID STORE +FLAGS.SILENT (\Deleted),
// then UID EXPUNGE, which needs UIDPLUS (see Move). UIDs already gone are not an error.
func (c *Conn) Expunge(ctx context.Context, folder string, uids UIDSet) error {
	if len(uids) == 0 {
		return nil
	}
	if !c.caps.UIDPlus {
		return c.seal(&Error{Op: fmt.Sprintf("expunge %s of %q", uids, folder), Class: ClassPermanent, Err: errNoUIDPlus})
	}
	if err := c.open(ctx, folder, true); err != nil {
		return err
	}
	return c.deleteUIDs(ctx, folder, uids)
}

// deleteUIDs marks uids \Deleted in the selected folder and expunges exactly them.
func (c *Conn) deleteUIDs(ctx context.Context, folder string, uids UIDSet) error {
	if _, _, err := c.store(ctx, folder, uids, imap.StoreFlagsAdd, []string{string(imap.FlagDeleted)}, 0); err != nil {
		return err
	}
	op := fmt.Sprintf("expunge %s of %q", uids, folder)
	g, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	cmd := c.client.UIDExpunge(uids.imap())
	for cmd.Next() != 0 {
		g.progress()
	}
	return c.end(g, op, cmd.Close())
}

// AppendResult says where Append stored the message, when the server says (RFC 4315 APPENDUID);
// both are 0 when it did not.
type AppendResult struct {
	UIDValidity, UID uint32
}

// Append stores msg in folder with flags (e.g. \Draft, \Seen) and internal date (zero: the
// server's now). It does not change the selected folder.
//
// A server may refuse an APPEND before the message is sent (a missing folder, a message too
// large): go-imap then closes the connection, so after such an error the Conn is closed, though
// the error is the server's (and permanent).
func (c *Conn) Append(ctx context.Context, folder string, flags []string, date time.Time, msg []byte) (AppendResult, error) {
	op := fmt.Sprintf("append a message of %s to %q", bytesText(int64(len(msg))), folder)
	g, err := c.begin(ctx, op)
	if err != nil {
		return AppendResult{}, err
	}
	cmd := c.client.Append(folder, int64(len(msg)), &imap.AppendOptions{Flags: imapFlags(flags), Time: date})
	_, writeErr := cmd.Write(msg)
	closeErr := cmd.Close()
	data, err := cmd.Wait()
	if writeErr != nil {
		// The literal was refused or not sent: go-imap has closed the connection (see above).
		// Not wrapped: later calls must not read as the server's refusal of them.
		c.setLost(errors.New("go-imap closed the connection after the server refused an APPEND before its message was sent"))
	}
	if err == nil {
		err = cmp.Or(writeErr, closeErr)
	}
	if err := c.end(g, op, err); err != nil {
		return AppendResult{}, err
	}
	return AppendResult{UIDValidity: data.UIDValidity, UID: uint32(data.UID)}, nil
}

// SearchHeader returns the UIDs of the messages in folder whose header field contains value
// (UID SEARCH HEADER; IMAP matches substrings, case-insensitively), ascending. With the whole
// Message-ID, angle brackets included, it finds a message appended or copied before: a retried
// APPEND or COPY looks first. It selects folder (read-only unless selected already).
func (c *Conn) SearchHeader(ctx context.Context, folder, field, value string) ([]uint32, error) {
	if err := c.open(ctx, folder, false); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("search %q for header %s %q", folder, field, value)
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	var opts *imap.SearchOptions
	if c.caps.ESearch || c.caps.IMAP4rev2 {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	criteria := &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: field, Value: value}}}
	data, err := c.client.UIDSearch(criteria, opts).Wait()
	if err := c.end(g, op, err); err != nil {
		return nil, err
	}
	all, err := searchUIDs(data)
	if err != nil {
		return nil, c.seal(&Error{Op: op, Class: ClassPermanent, Err: err})
	}
	uids := make([]uint32, len(all))
	for i, uid := range all {
		uids[i] = uint32(uid)
	}
	slices.Sort(uids)
	return uids, nil
}

// FlagsOf returns the current flags (and MODSEQ with CONDSTORE) of the messages of uids in
// folder, for conflict reports: FetchFlags after selecting folder (read-only unless selected
// already). Messages gone are absent.
func (c *Conn) FlagsOf(ctx context.Context, folder string, uids UIDSet) ([]FlagUpdate, error) {
	if err := c.open(ctx, folder, false); err != nil {
		return nil, err
	}
	updates, err := c.FetchFlags(ctx, uids, 0)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(updates, func(a, b FlagUpdate) int { return cmp.Compare(a.UID, b.UID) })
	return updates, nil
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
