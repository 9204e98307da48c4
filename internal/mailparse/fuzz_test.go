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
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := mailparse.Parse(raw)
		if err != nil && strings.Contains(err.Error(), "internal panic") {
			t.Fatalf("Parse panicked: %v", err)
		}
		checkValid(t, got)
	})
}
