package compose_test

import (
	"slices"
	"testing"

	"mailsync/internal/compose"
)

func TestReplyHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, id, raw string
		inReplyTo     string
		refs          []string
	}{
		{"a first message", "a@x", "Subject: s\r\n\r\nbody", "<a@x>", []string{"<a@x>"}},
		{"a thread", "c@x", "References: <a@x> <b@x>\r\n\r\nbody", "<c@x>", []string{"<a@x>", "<b@x>", "<c@x>"}},
		{"junk among the references", "c@x", "References: <a@x> junk <b@x\r\n\r\n", "<c@x>", []string{"<a@x>", "<c@x>"}},
		{"no Message-ID", "", "Subject: s\r\n\r\n", "", nil},
		{"a Message-ID that would inject", "a@x>\r\nBcc: <m@x", "\r\n", "", nil},
		{"a header that does not parse", "a@x", "\x00\x01", "<a@x>", []string{"<a@x>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, refs := compose.ReplyHeaders(tc.id, []byte(tc.raw))
			if in != tc.inReplyTo || !slices.Equal(refs, tc.refs) {
				t.Fatalf("ReplyHeaders = %q %q, want %q %q", in, refs, tc.inReplyTo, tc.refs)
			}
		})
	}
	long := "References:"
	for i := range 80 {
		long += " <r" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@x>"
	}
	if _, refs := compose.ReplyHeaders("p@x", []byte(long+"\r\n\r\n")); len(refs) != 50 || refs[49] != "<p@x>" {
		t.Fatalf("a long thread gives %d references ending %q, want 50 ending with the parent", len(refs), refs[len(refs)-1])
	}
}
