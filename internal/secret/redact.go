package secret

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Redacted replaces a secret in text.
const Redacted = "xxxxx"

// minLoose is the length from which a secret is redacted wherever it appears. A shorter one
// ("abc") is also a piece of ordinary words ("abcde", "cabin"), so it is redacted only where it
// stands alone, between non-alphanumeric characters: replacing it inside words would garble every
// message while hiding nothing (a three-letter password is no secret from anyone who guesses).
const minLoose = 6

// Redact returns text with every encoded form of secret replaced by Redacted: the secret itself
// (as sent raw or in an IMAP literal), its IMAP quoted form (with \" and \\ escapes), its Go
// quoted forms (how error messages quote odd input: %q, %+q), and its base64 (SASL). An empty secret
// changes nothing.
func Redact(text, secret string) string {
	if secret == "" || text == "" {
		return text
	}
	forms := []string{secret, imapQuoted(secret), goQuoted(strconv.Quote(secret)), goQuoted(strconv.QuoteToASCII(secret)),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawStdEncoding.EncodeToString([]byte(secret))}
	for _, f := range forms {
		if f == "" {
			continue
		}
		text = replace(text, f, utf8.RuneCountInString(f) < minLoose)
	}
	return text
}

// RedactPlain is Redact for a SASL PLAIN exchange too: the base64 of "\x00login\x00secret" that
// AUTHENTICATE PLAIN sends.
func RedactPlain(text, login, secret string) string {
	text = Redact(text, secret)
	if secret == "" {
		return text
	}
	return Redact(text, "\x00"+login+"\x00"+secret)
}

func imapQuoted(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// goQuoted strips the quotes of a Go quoted string.
func goQuoted(q string) string { return q[1 : len(q)-1] }

// replace replaces every occurrence of f in text; when standalone, only those not touching a
// letter or digit on either side.
func replace(text, f string, standalone bool) string {
	if !standalone {
		return strings.ReplaceAll(text, f, Redacted)
	}
	var b strings.Builder
	for {
		i := strings.Index(text, f)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		before, _ := utf8.DecodeLastRuneInString(text[:i])
		after, _ := utf8.DecodeRuneInString(text[i+len(f):])
		b.WriteString(text[:i])
		if isWordRune(before) || isWordRune(after) {
			b.WriteString(f)
		} else {
			b.WriteString(Redacted)
		}
		text = text[i+len(f):]
	}
}

func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}
