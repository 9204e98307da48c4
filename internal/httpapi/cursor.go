package httpapi

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// cursor is a position in the change logs of several accounts: for each account, the number of
// the last change the reader has. An account it does not name is at 0 (nothing read yet), so a
// cursor stays valid when the user adds an account.
//
// On the wire it is opaque: base64url, without padding, of "account:seq,account:seq,..." sorted
// by account. The empty string is the cursor at 0 for every account.
type cursor map[int64]int64

// maxCursorLen bounds what parseCursor decodes: a few thousand accounts' positions.
const maxCursorLen = 64 << 10

// parseCursor reads a cursor this server wrote. Anything else is an error that says so, for a
// 400 answer: a reader must never silently start from a position it did not mean.
func parseCursor(s string) (cursor, error) {
	c := cursor{}
	if s == "" {
		return c, nil
	}
	bad := func(why string) (cursor, error) {
		return nil, fmt.Errorf("cursor %q is not one this server wrote (%s): pass back the \"next\" of a response or the id of an event, as it was", clip(s), why)
	}
	if len(s) > maxCursorLen {
		return bad("too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	prev := int64(0)
	for _, pos := range strings.Split(string(raw), ",") {
		acct, seq, ok := strings.Cut(pos, ":")
		if !ok {
			return bad("a position is not account:seq")
		}
		id, err1 := strconv.ParseInt(acct, 10, 64)
		n, err2 := strconv.ParseInt(seq, 10, 64)
		if err1 != nil || err2 != nil || id <= 0 || n < 0 {
			return bad("a position is not two numbers")
		}
		if id <= prev {
			return bad("the accounts are not in order")
		}
		prev = id
		c[id] = n
	}
	return c, nil
}

// String is the cursor's wire form. Zero positions are written too: a stream's first event names
// every account it covers, so that its id is never empty (an empty id would make an EventSource
// forget where it was).
func (c cursor) String() string {
	if len(c) == 0 {
		return ""
	}
	ids := make([]int64, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(c[id], 10))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(b.String()))
}

func (c cursor) clone() cursor {
	out := make(cursor, len(c))
	for id, n := range c {
		out[id] = n
	}
	return out
}

// keep drops the positions of accounts that are not in own: deleted ones, or someone else's
// (which the cursor cannot have come from).
func (c cursor) keep(own map[int64]bool) {
	for id := range c {
		if !own[id] {
			delete(c, id)
		}
	}
}

// clip shortens what a client sent before an error message quotes it.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
