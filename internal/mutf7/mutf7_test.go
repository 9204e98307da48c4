package mutf7

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestEncode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"INBOX", "INBOX"},
		{"Archive/2024", "Archive/2024"},
		{"Données", "Donn&AOk-es"},
		{"已发送", "&XfJT0ZAB-"},
		{"日本語", "&ZeVnLIqe-"},
		{"a&b", "a&-b"},
		{"Ünïcode & more", "&ANw-n&AO8-code &- more"},
		{"Привет/Мир", "&BB8EQAQ4BDIENQRC-/&BBwEOARA-"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"x😀y", "x&2D3eAA-y"}, // a surrogate pair
		{"Emoji 📬", "Emoji &2D3c7A-"},
		{"tab\there", "tab&AAk-here"},
		{"", ""},
	} {
		if got := Encode(tc.in); got != tc.want {
			t.Errorf("Encode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// decode is a test-only inverse of Encode, to check that every encoding is printable ASCII that
// gives the name back.
func decode(t *testing.T, s string) string {
	t.Helper()
	enc := base64.NewEncoding(alphabet).WithPadding(base64.NoPadding)
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '-')
		if j < 0 {
			t.Fatalf("unterminated shift in %q", s)
		}
		if j == 1 {
			b.WriteByte('&')
		} else {
			raw, err := enc.DecodeString(s[i+1 : i+j])
			if err != nil || len(raw)%2 != 0 {
				t.Fatalf("bad base64 %q: %v", s[i+1:i+j], err)
			}
			units := make([]uint16, len(raw)/2)
			for k := range units {
				units[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
			}
			b.WriteString(string(utf16.Decode(units)))
		}
		s = s[i+j+1:]
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"INBOX", "Données", "a&b", "x😀y", "&&-&", "tab\there"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		name = strings.ToValidUTF8(name, "\uFFFD")
		got := Encode(name)
		for i := range len(got) {
			if got[i] < 0x20 || got[i] > 0x7e {
				t.Fatalf("Encode(%q) = %q: byte %#x is not printable ASCII", name, got, got[i])
			}
		}
		if back := decode(t, got); back != name {
			t.Fatalf("Encode(%q) = %q, which decodes to %q", name, got, back)
		}
	})
}

func TestDecode(t *testing.T) {
	for _, name := range []string{"INBOX", "Données", "已发送", "a&b", "x😀y", "tab\there", "Ünïcode & more", ""} {
		got, err := Decode(Encode(name))
		if err != nil || got != name {
			t.Errorf("Decode(Encode(%q)) = %q, %v", name, got, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"Donn&AOk-es", "Données"},
		{"Données", "Données"}, // raw UTF-8 is accepted, as go-imap does
		{"&-", "&"},
	} {
		if got, err := Decode(tc.in); err != nil || got != tc.want {
			t.Errorf("Decode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"Tom & Jerry", // an unescaped & with no end
		"R&D",         // the same, shorter
		"&AOk",        // no closing -
		"&AGE-",       // printable ASCII in base64
		"&AOk-&AOk-",  // two base64 runs in a row
		"&A-",         // too short to be a UTF-16 unit
		"&2D3-",       // half a surrogate pair
		"bell\x07",    // a control character
		"\xff\xfe",    // not UTF-8
		"&AOk=-",      // padding
	} {
		if got, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) = %q, want an error", bad, got)
		}
	}
}

// FuzzDecode: Decode never panics, undoes Encode for every UTF-8 name, and what it accepts
// encodes back to a name it decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"INBOX", "Donn&AOk-es", "R&D", "&2D3eAA-", "&-", "&AGE-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := Decode(s); err == nil {
			if again, err := Decode(Encode(d)); err != nil || again != d {
				t.Fatalf("Decode(%q) = %q, but Decode(Encode(that)) = %q, %v", s, d, again, err)
			}
		}
		if strings.ToValidUTF8(s, "") == s {
			if d, err := Decode(Encode(s)); err != nil || d != s {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, d, err)
			}
		}
	})
}
