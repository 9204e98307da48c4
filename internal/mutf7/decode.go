package mutf7

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalid is returned by Decode for a name that is not modified UTF-7.
var ErrInvalid = errors.New("mutf7: not valid modified UTF-7")

// Decode returns name decoded from modified UTF-7. It accepts exactly what go-imap v2's decoder
// accepts (raw UTF-8 included), so a caller can tell beforehand whether go-imap will take a name
// a server sent: go-imap fails the whole response, and the connection, on one it cannot decode.
func Decode(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", ErrInvalid
	}
	enc := base64.NewEncoding(alphabet).WithPadding(base64.NoPadding)
	var b strings.Builder
	ascii := true // the last thing decoded was printable ASCII: two base64 runs may not touch
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if ch < 0x20 || (ch > 0x7e && ch < utf8.RuneSelf) {
			return "", ErrInvalid
		}
		if ch != '&' {
			b.WriteByte(ch)
			ascii = true
			continue
		}
		end := strings.IndexByte(name[i+1:], '-')
		if end < 0 {
			return "", ErrInvalid
		}
		run := name[i+1 : i+1+end]
		i += 1 + end
		if run == "" {
			b.WriteByte('&')
			ascii = true
			continue
		}
		if !ascii || strings.ContainsAny(run, "\r\n=") {
			return "", ErrInvalid
		}
		raw, err := enc.DecodeString(run)
		if err != nil || len(raw) == 0 || len(raw)%2 == 1 {
			return "", ErrInvalid
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for j := 0; j < len(units); j++ {
			r := rune(units[j])
			if utf16.IsSurrogate(r) {
				if j++; j == len(units) {
					return "", ErrInvalid
				}
				if r = utf16.DecodeRune(r, rune(units[j])); r == utf8.RuneError {
					return "", ErrInvalid
				}
			} else if r >= 0x20 && r <= 0x7e {
				return "", ErrInvalid // printable ASCII must stand for itself
			}
			b.WriteRune(r)
		}
		ascii = false
	}
	return b.String(), nil
}
