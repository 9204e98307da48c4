package mailgen

import "testing"

func TestMaildirFolder(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"INBOX", "."},
		{"inbox", "."},
		{"Sent", ".Sent"},
		{"Archive/2024", ".Archive.2024"},
		{"Données", ".Donn&AOk-es"},
		{"已发送/子", ".&XfJT0ZAB-.&W1A-"},
	} {
		got, err := maildirFolder(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("maildirFolder(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if got, err := maildirFolder("v1.2"); err == nil {
		t.Errorf("maildirFolder(%q) = %q, want an error: '.' is the separator on disk", "v1.2", got)
	}
}

func TestMaildirFlags(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{`\Seen`}, "S"},
		{[]string{`\Seen`, `\Flagged`, `\Answered`}, "FRS"},
		{[]string{`\Deleted`, `\Draft`, `\Seen`}, "DST"},
		{[]string{`\Recent`, `$Junk`}, ""},
	} {
		if got := maildirFlags(tc.in); got != tc.want {
			t.Errorf("maildirFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
