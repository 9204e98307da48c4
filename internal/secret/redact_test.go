package secret

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, text, secret, want string
	}{
		{"raw", `NO LOGIN bob hunter2-long failed`, "hunter2-long", `NO LOGIN bob xxxxx failed`},
		{"imap quoted with escapes", `NO LOGIN "bob" "pa\"ss\\word" failed`, `pa"ss\word`, `NO LOGIN "bob" "xxxxx" failed`},
		{"go quoted", "unsupported response type \"p\u00e4ss\\tword\"", "p\u00e4ss\tword", `unsupported response type "xxxxx"`},
		{"go quoted as ASCII", `unsupported response type "p\u00e4ss\tword"`, "p\u00e4ss\tword", `unsupported response type "xxxxx"`},
		{"literal", "NO LOGIN bob {12}\r\nhunter2-long\r\n", "hunter2-long", "NO LOGIN bob {12}\r\nxxxxx\r\n"},
		{"base64", "NO AUTHENTICATE " + base64.StdEncoding.EncodeToString([]byte("hunter2-long")), "hunter2-long", "NO AUTHENTICATE xxxxx"},
		{"every occurrence", "a hunter2-long b hunter2-long", "hunter2-long", "a xxxxx b xxxxx"},
		{"long secret inside a word", "xhunter2-longx", "hunter2-long", "xxxxxxx"},
		{"short secret standing alone", `LOGIN bob ab: NO "ab" {2}` + "\r\nab", "ab", `LOGIN bob xxxxx: NO "xxxxx" {2}` + "\r\nxxxxx"},
		{"short secret inside words is left", "imap: login to host as bob: connection closed by the server", "in", "imap: login to host as bob: connection closed by the server"},
		{"short secret, three letters", "the server said NO; the end", "the", "xxxxx server said NO; xxxxx end"},
		{"empty secret", "anything", "", "anything"},
		{"no occurrence", "connection refused", "hunter2-long", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.text, tt.secret); got != tt.want {
				t.Errorf("Redact(%q, %q)\n = %q\nwant %q", tt.text, tt.secret, got, tt.want)
			}
		})
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00bob\x00pw"))
	if got := RedactPlain("AUTHENTICATE PLAIN "+plain, "bob", "pw"); strings.Contains(got, plain) {
		t.Errorf("the SASL PLAIN blob survived: %q", got)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("NO LOGIN bob \"se\\\"cret\" failed", `se"cret`)
	f.Add("login in", "in")
	f.Fuzz(func(t *testing.T, text, secret string) {
		got := Redact(text, secret)
		if utf8.RuneCountInString(secret) >= minLoose && strings.Contains(got, secret) && !strings.Contains(Redacted, secret) {
			t.Fatalf("Redact(%q, %q) = %q still holds the secret", text, secret, got)
		}
		if secret == "" && got != text {
			t.Fatalf("an empty secret changed %q to %q", text, got)
		}
	})
}
