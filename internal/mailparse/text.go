package mailparse

import (
	"bytes"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

// decodeBytes returns b as UTF-8 text. Valid UTF-8 is kept as is. Otherwise the bytes are in
// some 8-bit charset that was undeclared, mislabelled or unknown: mostly-UTF-8 text with a few bad
// bytes keeps its UTF-8 and gets U+FFFD for the bad bytes; anything else is read in
// fallbackCharset (Windows-1252 if that is unknown), which maps every byte to a character.
func decodeBytes(b []byte, fallbackCharset string) string {
	if utf8.Valid(b) {
		return string(b)
	}
	if mostlyUTF8(b) {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	if fallbackCharset != "" && fallbackCharset != "windows-1252" {
		if r, err := charset.Reader(fallbackCharset, bytes.NewReader(b)); err == nil {
			if out, err := io.ReadAll(r); err == nil && utf8.Valid(out) {
				return string(out)
			}
		}
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(out)
}

// mostlyUTF8 reports whether b has more well-formed multi-byte UTF-8 sequences than invalid
// bytes: then it is UTF-8 with damage, not a legacy charset.
func mostlyUTF8(b []byte) bool {
	multi, invalid := 0, 0
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			invalid++
		} else {
			multi++
		}
		b = b[size:]
	}
	return multi > invalid
}

// cleanString makes s valid UTF-8 without NUL bytes (PostgreSQL text columns reject NUL).
func cleanString(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// bodyText turns decoded body bytes into the stored text: UTF-8 (see decodeBytes), LF line
// endings, no trailing blank space, capped. Valid UTF-8, the common case, is normalised in
// place and converted to a string once.
func bodyText(b []byte, fallbackCharset string) string {
	if !utf8.Valid(b) {
		return normalizeText(decodeBytes(b, fallbackCharset))
	}
	if bytes.IndexByte(b, '\r') >= 0 {
		w := 0
		for r := 0; r < len(b); r++ {
			c := b[r]
			if c == '\r' {
				if r+1 < len(b) && b[r+1] == '\n' {
					continue
				}
				c = '\n'
			}
			b[w] = c
			w++
		}
		b = b[:w]
	}
	b = bytes.TrimRightFunc(b, unicode.IsSpace)
	return capText(string(b), MaxBodyText)
}

// normalizeText turns CRLF and lone CR into LF, drops trailing blank space and caps the length.
func normalizeText(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	return capText(s, MaxBodyText)
}

// capText cuts s to at most limit bytes without splitting a UTF-8 sequence.
func capText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && cut > limit-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// snippet returns the first n runes of text with every run of white space collapsed to one
// space, for message lists. It copies whole words at a time: it runs on every message.
func snippet(text string, n int) string {
	var b strings.Builder
	b.Grow(min(len(text), n*2))
	count := 0 // runes written, separators included
	word := -1 // byte offset where the current word starts, -1 between words
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		if unicode.IsSpace(r) {
			if word >= 0 {
				b.WriteString(text[word:i])
				word = -1
			}
			i += size
			continue
		}
		if count >= n {
			break
		}
		if word < 0 {
			if b.Len() > 0 {
				if count+1 >= n {
					break
				}
				b.WriteByte(' ')
				count++
			}
			word = i
		}
		count++
		i += size
		if count >= n {
			b.WriteString(text[word:i])
			word = -1
			break
		}
	}
	if word >= 0 {
		b.WriteString(text[word:])
	}
	return b.String()
}
