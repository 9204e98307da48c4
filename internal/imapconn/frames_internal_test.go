package imapconn

import (
	"errors"
	"io"
	"strings"
	"testing"

	"mailsync/internal/mutf7"
)

// frame passes input through a frame reader with the given budget and returns what go-imap
// would read, the names it was told were respelled, and the limit error if one tripped.
func frame(input string, max int64) (string, []string, error) {
	var names []string
	var tripped error
	f := newFrameReader(strings.NewReader(input), max, func(err error) { tripped = err },
		func(n string) { names = append(names, n) })
	out, _ := io.ReadAll(f)
	return string(out), names, tripped
}

func TestFrameReader(t *testing.T) {
	body := strings.Repeat("x", 5000)
	tests := []struct {
		name, in, want string
		max            int64
		names          []string
		tripped        bool
	}{
		{name: "lines pass unchanged", in: "* OK hi\r\n* 3 EXISTS\r\nA1 OK done\r\n", want: "* OK hi\r\n* 3 EXISTS\r\nA1 OK done\r\n"},
		{name: "a body literal is not counted", max: 100,
			in:   "* 1 FETCH (UID 5 BODY[] {5000}\r\n" + body + ")\r\n",
			want: "* 1 FETCH (UID 5 BODY[] {5000}\r\n" + body + ")\r\n"},
		{name: "a partial body literal is not counted", max: 100,
			in:   "* 1 FETCH (BODY[]<0> {5000}\r\n" + body + ")\r\n",
			want: "* 1 FETCH (BODY[]<0> {5000}\r\n" + body + ")\r\n"},
		{name: "an envelope literal is counted", max: 100, tripped: true,
			in: "* 1 FETCH (ENVELOPE (NIL {5000}\r\n" + body + "))\r\n"},
		{name: "a body literal outside a FETCH is counted", max: 100, tripped: true,
			in: "* OK BODY[] {5000}\r\n" + body + "\r\n"},
		{name: "the budget is per response", max: 30,
			in:   "* LIST () \"/\" \"abcdefghij\"\r\n* LIST () \"/\" \"klmnopqrst\"\r\n",
			want: "* LIST () \"/\" \"abcdefghij\"\r\n* LIST () \"/\" \"klmnopqrst\"\r\n"},
		{name: "a long line trips", max: 30, tripped: true, in: "* LIST () \"/\" \"" + body + "\"\r\n"},
		{name: "a valid name is untouched",
			in: "* LIST () \"/\" \"Donn&AOk-es\"\r\n", want: "* LIST () \"/\" \"Donn&AOk-es\"\r\n"},
		{name: "a bare & in an atom", in: "* LIST (\\Marked) \".\" R&D\r\n",
			want: "* LIST (\\Marked) \".\" \"R&-D\"\r\n", names: []string{"R&D"}},
		{name: "a bare & in a literal, with extended data after it",
			in:   "* LIST () \"/\" {9}\r\nTom & Ann (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
			want: "* LIST () \"/\" \"Tom &- Ann\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n", names: []string{"Tom & Ann"}},
		{name: "STATUS names the same folder the same way",
			in:   "* STATUS \"a&b\" (MESSAGES 1)\r\n",
			want: "* STATUS \"a&-b\" (MESSAGES 1)\r\n", names: []string{"a&b"}},
		{name: "INBOX in any case is left to go-imap", in: "* LIST () \"/\" inbox\r\n", want: "* LIST () \"/\" inbox\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.max == 0 {
				tt.max = 1 << 20
			}
			got, names, tripped := frame(tt.in, tt.max)
			if tt.tripped {
				var le *LimitError
				if !errors.As(tripped, &le) {
					t.Fatalf("no limit error (read %q)", got)
				}
				return
			}
			if tripped != nil {
				t.Fatalf("tripped: %v", tripped)
			}
			if got != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			if strings.Join(names, "|") != strings.Join(tt.names, "|") {
				t.Errorf("names %q, want %q", names, tt.names)
			}
		})
	}
}

// FuzzFrameReader: whatever the server sends, the frame reader never panics, passes everything
// but respelled names through unchanged, and every name it respells is one go-imap can decode.
func FuzzFrameReader(f *testing.F) {
	for _, seed := range []string{
		"* LIST () \"/\" R&D\r\n", "* LIST () \"/\" {3}\r\na&b\r\n", "* STATUS {2}\r\n&x (MESSAGES 1)\r\n",
		"* 1 FETCH (BODY[] {3}\r\nabc)\r\n", "* LIST (\\X \"/\" \"a\\\"&\"\r\n", "* OK {99999999999999999999}\r\n",
		"* LIST () \"\\\\\" \"&Jjo\"\r\n", "A1 OK\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, names, tripped := frame(string(in), 4096)
		if tripped == nil && len(names) == 0 && got != string(in) {
			t.Fatalf("read %q from %q", got, in)
		}
		if len(names) > 0 {
			if _, name, changed := respell([]byte(got)); changed {
				t.Fatalf("the respelled %q would be respelled again (%q)", got, name)
			}
		}
		for _, n := range names {
			if back, err := mutf7.Decode(mutf7.Encode(n)); err != nil || back != n {
				t.Fatalf("name %q respelled as %q, which decodes to %q, %v", n, mutf7.Encode(n), back, err)
			}
		}
	})
}
