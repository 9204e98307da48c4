// Package mutf7 spells mailbox names in IMAP's modified UTF-7 (RFC 3501 §5.1.3), the form
// Dovecot uses for Maildir++ directory and subscription names. The test servers and the corpus
// generator both write Maildir++ trees by hand and must agree with Dovecot on every name.
package mutf7

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
)

// alphabet is base64 with ',' instead of '/', written without padding.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

// Encode returns name in modified UTF-7: printable ASCII stands for itself ("&" becomes "&-"),
// every other run of characters becomes "&" + base64 of its UTF-16BE + "-".
func Encode(name string) string {
	enc := base64.NewEncoding(alphabet).WithPadding(base64.NoPadding)
	var b strings.Builder
	var run []rune // pending characters outside printable ASCII
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
		b.WriteString(enc.EncodeToString(raw))
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
