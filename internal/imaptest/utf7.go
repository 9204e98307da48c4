package imaptest

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
)

// mutf7 is the base64 alphabet of modified UTF-7 (RFC 3501 §5.1.3): ',' instead of '/', no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").
	WithPadding(base64.NoPadding)

// encodeMUTF7 encodes a mailbox name to modified UTF-7, the spelling Dovecot uses for Maildir++
// folder directories (".Donn&AOk-es" for "Données").
func encodeMUTF7(name string) string {
	var sb strings.Builder
	var run []rune // pending non-ASCII characters
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		buf := make([]byte, 0, 2*len(u))
		for _, r := range u {
			buf = append(buf, byte(r>>8), byte(r))
		}
		sb.WriteByte('&')
		sb.WriteString(mutf7.EncodeToString(buf))
		sb.WriteByte('-')
		run = run[:0]
	}
	for _, r := range name {
		switch {
		case r == '&':
			flush()
			sb.WriteString("&-")
		case r >= 0x20 && r <= 0x7e:
			flush()
			sb.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return sb.String()
}
