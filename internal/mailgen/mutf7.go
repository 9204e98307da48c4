package mailgen

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
)

// encodeMailboxName encodes a folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3), the form
// Dovecot uses for Maildir++ directory names: printable ASCII stands for itself ("&" becomes
// "&-"), every other run of characters becomes "&" + base64 of its UTF-16BE + "-".
func encodeMailboxName(name string) string {
	// The base64 alphabet of modified UTF-7: "," instead of "/", no padding.
	mutf7 := base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		units := utf16.Encode(run)
		raw := make([]byte, 2*len(units))
		for i, u := range units {
			raw[2*i], raw[2*i+1] = byte(u>>8), byte(u)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range name {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}
