package mailparse_test

import (
	"strings"
	"testing"

	"mailsync/internal/mailparse"
)

// FuzzParse checks the package's promises on arbitrary bytes: no panic (not even one recovered
// inside Parse, which would hide a bug), valid UTF-8 without NUL everywhere, caps respected.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases(f) {
		f.Add(tc.raw)
	}
	// Shapes that would be slow if some step were quadratic (each was timed: all linear).
	for _, s := range []string{
		"To: " + strings.Repeat("(", 4096) + "\r\n\r\nx",
		"To: " + strings.Repeat(`"a" `, 1024) + "\r\n\r\nx",
		"Subject: " + strings.Repeat("=?utf-8?q?a?= ", 1024) + "\r\n\r\nx",
		"Content-Type: text/html\r\n\r\n<script>" + strings.Repeat("</a", 4096),
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", 64),
		"A: b\r\n" + strings.Repeat("bad\r\n", 1024) + "\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := mailparse.Parse(raw)
		if err != nil && strings.Contains(err.Error(), "internal panic") {
			t.Fatalf("Parse panicked: %v", err)
		}
		checkValid(t, got)
	})
}
