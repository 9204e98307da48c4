package mailparse

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		text string
		n    int
		want string
	}{
		{"", 10, ""},
		{"   \n\t ", 10, ""},
		{"  hello   world \r\n again ", 50, "hello world again"},
		{"hello world", 5, "hello"},
		{"hello world", 6, "hello"}, // no dangling separator
		{"hello world", 7, "hello w"},
		{"averyveryverylongword", 4, "aver"},
		{"héllo wörld", 8, "héllo wö"},
		{"日本語 の テキスト", 5, "日本語 の"},
		{"a\u00a0b\u3000c", 10, "a b c"}, // Unicode spaces collapse too
	} {
		got := snippet(tc.text, tc.n)
		if got != tc.want {
			t.Errorf("snippet(%q, %d) = %q, want %q", tc.text, tc.n, got, tc.want)
		}
		if utf8.RuneCountInString(got) > tc.n {
			t.Errorf("snippet(%q, %d) has %d runes", tc.text, tc.n, utf8.RuneCountInString(got))
		}
	}
}

func TestCapText(t *testing.T) {
	for _, tc := range []struct {
		s     string
		limit int
		want  string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},   // é is 2 bytes: do not split it
		{"a日", 3, "a"},   // 3-byte rune
		{"a😀", 4, "a"},   // 4-byte rune
		{"a😀b", 5, "a😀"}, // cut after a whole rune
	} {
		if got := capText(tc.s, tc.limit); got != tc.want {
			t.Errorf("capText(%q, %d) = %q, want %q", tc.s, tc.limit, got, tc.want)
		}
	}
}

func TestBodyText(t *testing.T) {
	for _, tc := range []struct {
		in, fallback, want string
	}{
		{"a\r\nb\rc\n\n  \r\n", "", "a\nb\nc"},
		{"caf\xe9", "windows-1252", "café"},
		{"caf\xe9", "iso-8859-15", "café"},
		{"\xcf\xf0\xe8\xe2\xe5\xf2", "windows-1251", "Привет"},
		{"日本語\xff", "windows-1252", "日本語\uFFFD"}, // mostly UTF-8: keep it, mark the bad byte
		{"x\xe9", "no-such-charset", "xé"},       // unknown fallback: Windows-1252
	} {
		if got := bodyText([]byte(tc.in), tc.fallback); got != tc.want {
			t.Errorf("bodyText(%q, %q) = %q, want %q", tc.in, tc.fallback, got, tc.want)
		}
	}
}

func TestCleanString(t *testing.T) {
	for in, want := range map[string]string{
		"ok":         "ok",
		"a\x00b":     "ab",
		"bad\xffend": "bad\uFFFDend",
	} {
		if got := cleanString(in); got != want {
			t.Errorf("cleanString(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<p>one</p><p>two</p>", "one\n\ntwo"},
		{"a<br>b<br/>c", "a\nb\nc"},
		{"<table><tr><td>x</td><td>y</td></tr></table>", "x y"},
		{"<!-- hidden --><b>shown</b>", "shown"},
		{"<!DOCTYPE html><html><head><title>t</title></head><body>b</body></html>", "b"},
		{"<style>p { x: y }</style><script>var a = '</p>';</script>after", "after"},
		{"1 < 2 &amp;&amp; 3 &gt; 2 &nbsp;&euro;", "1 < 2 && 3 > 2 €"},
		{"unclosed <b tag", "unclosed"},
		{"<SCRIPT>upper</SCRIPT>ok", "ok"},
		{"  spaced \n\n  out  ", "spaced out"},
	} {
		if got := htmlToText(tc.in); got != tc.want {
			t.Errorf("htmlToText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitAddressList(t *testing.T) {
	got := splitAddressList(`"Doe, John" <j@x>, (a, comment) b@y, <c@z>`)
	want := []string{`"Doe, John" <j@x>`, ` (a, comment) b@y`, ` <c@z>`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitAddressList = %q, want %q", got, want)
	}
}

func TestParseMessageID(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b>":              "a@b",
		"  <a@b> (comment)":  "a@b",
		"a@b":                "a@b",
		"<no-at-sign>":       "no-at-sign",
		"<unclosed@x":        "unclosed@x",
		"":                   "",
		"junk <real@id> <x>": "real@id",
	} {
		if got := parseMessageID(in); got != want {
			t.Errorf("parseMessageID(%q) = %q, want %q", in, got, want)
		}
	}
}
