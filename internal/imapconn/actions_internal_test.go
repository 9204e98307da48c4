package imapconn

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestModifiedFrom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines string
		uids  UIDSet
		want  []uint32
		bad   bool
	}{
		{"single", "T3 OK [MODIFIED 7] Conditional STORE failed\r\n", UIDsFrom(1), []uint32{7}, false},
		{"ranges", "T3 OK [MODIFIED 2:4,9] x\r\n", UIDsFrom(1), []uint32{2, 3, 4, 9}, false},
		{"reversed range", "T3 NO [MODIFIED 4:2] x\r\n", UIDsFrom(1), []uint32{2, 3, 4}, false},
		{"only asked UIDs", "T3 OK [MODIFIED 1:10] x\r\n", UIDs(3, 12), []uint32{3}, false},
		{"none", "", UIDsFrom(1), nil, false},
		{"star", "T3 OK [MODIFIED 5:*] x\r\n", UIDsFrom(1), nil, true},
		{"zero", "T3 OK [MODIFIED 0] x\r\n", UIDsFrom(1), nil, true},
		{"unterminated", "T3 OK [MODIFIED 5\r\n", UIDsFrom(1), nil, true},
		{"too many", "T3 OK [MODIFIED 1:4294967295] x\r\n", UIDsFrom(1), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := modifiedFrom([]byte(tc.lines), tc.uids)
			if (err != nil) != tc.bad {
				t.Fatalf("modifiedFrom(%q) error = %v, want error %v", tc.lines, err, tc.bad)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("modifiedFrom(%q) = %v, want %v", tc.lines, got, tc.want)
			}
		})
	}
}

func TestIsModifiedLine(t *testing.T) {
	for line, want := range map[string]bool{
		"T3 OK [MODIFIED 7] Conditional STORE failed\r\n":                 true,
		"t3 ok [modified 7] x\r\n":                                        true,
		"T3 NO [MODIFIED 7] x\r\n":                                        true,
		"* OK [MODIFIED 7] unilateral\r\n":                                false,
		"T3 UID STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT ([MODIFIED)\r\n": false,
		"T3 OK Completed\r\n":                                             false,
		"* 1 FETCH (UID 7 MODSEQ (12))\r\n":                               false,
	} {
		if got := isModifiedLine([]byte(line)); got != want {
			t.Errorf("isModifiedLine(%q) = %v, want %v", line, got, want)
		}
	}
}

// The line tap keeps the lines it is asked for whatever the chunking, and skips lines too long
// to hold without losing the next ones.
func TestTapLines(t *testing.T) {
	var tap idTap
	tap.armLines(isModifiedLine)
	long := make([]byte, maxTapped+10)
	for i := range long {
		long[i] = 'x'
	}
	stream := "* 1 FETCH (UID 4 MODSEQ (9))\r\n" + string(long) + "\r\nT9 OK [MODIFIED 4] done\r\n"
	for i := 0; i < len(stream); i += 7 {
		_, _ = tap.Write([]byte(stream[i:min(i+7, len(stream))]))
	}
	if got := string(tap.takeLines()); got != "T9 OK [MODIFIED 4] done\r\n" {
		t.Errorf("takeLines = %q", got)
	}
	_, _ = tap.Write([]byte("T10 OK [MODIFIED 5] later\r\n"))
	if got := tap.takeLines(); len(got) != 0 {
		t.Errorf("a disarmed tap kept %q", got)
	}
}

func TestUIDSetWithout(t *testing.T) {
	for _, tc := range []struct {
		set  UIDSet
		ex   []uint32
		want string
	}{
		{UIDs(1, 2, 3, 4, 5), []uint32{3}, "1:2,4:5"},
		{UIDs(1, 2, 3), []uint32{1, 3}, "2"},
		{UIDs(1, 2, 3), []uint32{1, 2, 3}, ""},
		{UIDsFrom(5), []uint32{5, 7}, "6,8:*"},
		{UIDs(4), nil, "4"},
		{UIDs(4, 9), []uint32{2, 9, 9}, "4"},
		{UIDSet{{Start: 9, Stop: 5}}, []uint32{7}, "5:6,8:9"},
	} {
		if got := tc.set.without(tc.ex).String(); got != tc.want {
			t.Errorf("%s without %v = %q, want %q", tc.set, tc.ex, got, tc.want)
		}
	}
}

func TestIsNoSuchFolder(t *testing.T) {
	no := func(code imap.ResponseCode, text string) *imap.Error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"TRYCREATE", &Error{Op: "append", Err: no(imap.ResponseCodeTryCreate, "Mailbox doesn't exist")}, true},
		{"NONEXISTENT", &Error{Op: "select", Err: no(imap.ResponseCodeNonExistent, "No such mailbox")}, true},
		{"wrapped", fmt.Errorf("moving: %w", &Error{Err: no(imap.ResponseCodeTryCreate, "")}), true},
		{"select, in words", noteMissing(&Error{Op: "select", Err: no("", "Mailbox does not exist")}), true},
		{"select, in other words", noteMissing(&Error{Op: "select", Err: no("", "Unknown Mailbox: Foo")}), true},
		{"select refused otherwise", noteMissing(&Error{Op: "select", Err: no("", "Permission denied")}), false},
		{"select refused with a code", noteMissing(&Error{Op: "select", Err: no(imap.ResponseCodeNoPerm, "no such luck")}), false},
		{"words on a BAD", noteMissing(&Error{Op: "select", Err: &imap.Error{Type: imap.StatusResponseTypeBad, Text: "no such command"}}), false},
		{"words without a SELECT", &Error{Op: "copy", Err: no("", "Mailbox does not exist")}, false},
		{"over quota", &Error{Err: no(imap.ResponseCodeOverQuota, "Quota exceeded")}, false},
		{"not an IMAP answer", &Error{Err: errors.New("mailbox does not exist")}, false},
		{"nil", nil, false},
	} {
		if got := IsNoSuchFolder(tc.err); got != tc.want {
			t.Errorf("%s: IsNoSuchFolder(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
