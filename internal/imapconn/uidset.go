package imapconn

import (
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// UIDRange is an inclusive range of UIDs. Stop == 0 stands for "*", the highest UID in the folder.
type UIDRange struct {
	Start, Stop uint32
}

// UIDSet is a set of UIDs in range form, as sent on the wire.
type UIDSet []UIDRange

// UIDsFrom returns the set "start:*": every message with UID >= start. Unlike raw IMAP, where
// "N:*" also matches the last message when N is above every UID, the fetches of this package only
// return messages whose UID is really in the set.
func UIDsFrom(start uint32) UIDSet {
	return UIDSet{{Start: start, Stop: 0}}
}

// UIDs returns the set of the given UIDs, sorted and compacted into ranges.
func UIDs(uids ...uint32) UIDSet {
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var set UIDSet
	for _, uid := range sorted {
		if uid == 0 {
			continue
		}
		if n := len(set); n > 0 && set[n-1].Stop == uid-1 {
			set[n-1].Stop = uid
			continue
		}
		set = append(set, UIDRange{Start: uid, Stop: uid})
	}
	return set
}

// String renders the set in IMAP syntax, e.g. "1:5,9,12:*".
func (s UIDSet) String() string {
	var sb strings.Builder
	for i, r := range s {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(uint64(r.Start), 10))
		if r.Stop == r.Start {
			continue
		}
		sb.WriteByte(':')
		if r.Stop == 0 {
			sb.WriteByte('*')
		} else {
			sb.WriteString(strconv.FormatUint(uint64(r.Stop), 10))
		}
	}
	return sb.String()
}

func (s UIDSet) imap() imap.UIDSet {
	set := make(imap.UIDSet, len(s))
	for i, r := range s {
		set[i] = imap.UIDRange{Start: imap.UID(r.Start), Stop: imap.UID(r.Stop)}
	}
	return set
}

// contains reports whether uid is in the set, reading Stop == 0 as unbounded.
func (s UIDSet) contains(uid uint32) bool {
	for _, r := range s {
		lo, hi := r.Start, r.Stop
		if hi != 0 && hi < lo {
			lo, hi = hi, lo // "5:3" means "3:5"
		}
		if uid >= lo && (hi == 0 || uid <= hi) {
			return true
		}
	}
	return false
}

// single returns the set's UID if it names exactly one, else 0.
func (s UIDSet) single() uint32 {
	if len(s) == 1 && s[0].Start == s[0].Stop {
		return s[0].Start
	}
	return 0
}

// without returns the set less the given UIDs.
func (s UIDSet) without(uids []uint32) UIDSet {
	if len(uids) == 0 {
		return s
	}
	ex := slices.Sorted(slices.Values(uids))
	var out UIDSet
	for _, r := range s {
		lo, hi := r.Start, r.Stop
		if hi != 0 && hi < lo {
			lo, hi = hi, lo
		}
		empty := false
		for _, uid := range ex {
			if uid < lo || (hi != 0 && uid > hi) {
				continue
			}
			if uid > lo {
				out = append(out, UIDRange{Start: lo, Stop: uid - 1})
			}
			if uid == hi || uid == 1<<32-1 {
				empty = true
				break
			}
			lo = uid + 1
		}
		if !empty {
			out = append(out, UIDRange{Start: lo, Stop: hi})
		}
	}
	return out
}
