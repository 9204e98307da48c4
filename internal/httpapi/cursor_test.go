package httpapi

import "testing"

// FuzzCursor: only what encodeCursor made decodes, and back to the same text. The codec is
// unexported, so this test stays inside the package.
func FuzzCursor(f *testing.F) {
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA")
	f.Add(encodeCursor(struct{ Date, ID int64 }{1, 2}))
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if s != "" && encodeCursor(c) != s {
			// Decoding is strict: only what encodeCursor made is accepted.
			t.Fatalf("cursor %q decodes to %+v, which encodes to %q", s, c, encodeCursor(c))
		}
	})
}
