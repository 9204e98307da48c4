package mailparse

import (
	"bytes"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// maxFieldValue caps one unfolded header value: no legitimate header we store is this long, and a
// hostile one must not cost more than this.
const maxFieldValue = 16 << 10

// maxRecipients bounds the To+Cc list kept for one message.
const maxRecipients = 1000

// header holds the few top-level fields mailparse uses, unfolded but not yet decoded. Reading
// only these (instead of building a full header map) keeps Parse cheap on messages with long
// Received/DKIM/ARC blocks.
type header struct {
	messageID, subject, from, date string
	to, cc                         []string
	contentType, transferEncoding  string
	// fallbackCharset decodes raw 8-bit bytes in header values (RFC 6532 allows UTF-8 there; older
	// software wrote the body's charset or Latin-1): the message's declared charset, else
	// Windows-1252, the usual superset of Latin-1.
	fallbackCharset string
}

// splitHeader reads the top-level header fields out of raw and returns them with the body.
//
// It is more forgiving than RFC 5322 (and than go-message's reader, which stops at the first bad
// line): a malformed line inside the header is reported and skipped so the fields after it are
// still found. If the very first line is not a header field, the message has no header and all of
// raw is body. A leading mbox "From " line is ignored.
func splitHeader(raw []byte, p *problems) (header, []byte) {
	var h header
	pos := 0
	if isMboxFromLine(raw) {
		pos = lineEnd(raw, 0)
	}
	seenField := false
	malformed := 0
	var firstMalformed []byte
	body := raw[len(raw):]
	for pos < len(raw) {
		end := lineEnd(raw, pos)
		if isBlankLine(raw[pos:end]) {
			body = raw[end:]
			break
		}
		// Gather continuation lines (starting with space or tab) into this field.
		fieldEnd := end
		for fieldEnd < len(raw) && (raw[fieldEnd] == ' ' || raw[fieldEnd] == '\t') {
			fieldEnd = lineEnd(raw, fieldEnd)
		}
		field := raw[pos:fieldEnd]
		key, value, ok := cutField(field)
		if !ok {
			if !seenField {
				// Not a message header at all: treat everything as body.
				p.addf("header: no header fields, first line %s", quoteSnippet(field))
				return header{fallbackCharset: "windows-1252"}, raw
			}
			malformed++
			if firstMalformed == nil {
				firstMalformed = field
			}
			pos = fieldEnd
			continue
		}
		seenField = true
		h.set(key, value)
		pos = fieldEnd
	}
	if malformed > 0 {
		p.addf("header: %d malformed line(s) skipped, first %s", malformed, quoteSnippet(firstMalformed))
	}
	h.fallbackCharset = "windows-1252"
	if h.contentType != "" {
		if _, params, err := mime.ParseMediaType(h.contentType); err == nil {
			if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
				h.fallbackCharset = cs
			}
		}
	}
	return h, body
}

// isMboxFromLine reports whether raw starts with an mbox separator ("From sender date"), which
// some stores leave in front of the message; "From : x" is a (sloppy) header field, not one.
func isMboxFromLine(raw []byte) bool {
	rest, ok := bytes.CutPrefix(raw, []byte("From "))
	return ok && len(bytes.TrimLeft(rest, " \t")) > 0 && bytes.TrimLeft(rest, " \t")[0] != ':'
}

// set records a field if it is one mailparse uses; the first occurrence wins, except To and Cc
// which accumulate.
func (h *header) set(key, value []byte) {
	switch len(key) {
	case 2:
		switch {
		case equalFoldASCII(key, "to"):
			h.to = append(h.to, unfold(value))
		case equalFoldASCII(key, "cc"):
			h.cc = append(h.cc, unfold(value))
		}
	case 4:
		switch {
		case equalFoldASCII(key, "from"):
			setOnce(&h.from, value)
		case equalFoldASCII(key, "date"):
			setOnce(&h.date, value)
		}
	case 7:
		if equalFoldASCII(key, "subject") {
			setOnce(&h.subject, value)
		}
	case 10:
		if equalFoldASCII(key, "message-id") {
			setOnce(&h.messageID, value)
		}
	case 12:
		if equalFoldASCII(key, "content-type") {
			setOnce(&h.contentType, value)
		}
	case 25:
		if equalFoldASCII(key, "content-transfer-encoding") {
			setOnce(&h.transferEncoding, value)
		}
	}
}

func setOnce(dst *string, value []byte) {
	if *dst == "" {
		*dst = unfold(value)
	}
}

// lineEnd returns the index just past the LF ending the line that starts at pos (or len(b)).
func lineEnd(b []byte, pos int) int {
	if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
		return pos + i + 1
	}
	return len(b)
}

func isBlankLine(line []byte) bool {
	return len(line) == 0 || line[0] == '\n' || (line[0] == '\r' && (len(line) == 1 || line[1] == '\n'))
}

// cutField splits "Key: value" and checks the key is RFC 5322 field-name characters (printable
// ASCII but colon); trailing blanks before the colon, common in the wild, are tolerated.
func cutField(field []byte) (key, value []byte, ok bool) {
	colon := bytes.IndexByte(field, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	key = bytes.TrimRight(field[:colon], " \t")
	if len(key) == 0 {
		return nil, nil, false
	}
	for _, c := range key {
		if c < 33 || c > 126 {
			return nil, nil, false
		}
	}
	return key, field[colon+1:], true
}

// unfold joins a folded header value into one line, trimming the blanks around each line break
// the way go-message does, and caps its length.
func unfold(v []byte) string {
	if len(v) > maxFieldValue {
		v = v[:maxFieldValue]
	}
	if bytes.IndexByte(v, '\n') < 0 || bytes.IndexByte(v, '\n') == len(v)-1 {
		return string(bytes.TrimSpace(v))
	}
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		line := v
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			line, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		line = bytes.Trim(line, " \t\r")
		if len(line) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.Write(line)
	}
	return b.String()
}

func equalFoldASCII(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// wordDecoder decodes RFC 2047 encoded-words with every charset go-message knows, without relying
// on the process-wide message.CharsetReader.
func wordDecoder() *mime.WordDecoder {
	return &mime.WordDecoder{CharsetReader: charset.Reader}
}

// decodeText turns a header value into UTF-8 text: raw 8-bit bytes through the fallback charset,
// then RFC 2047 encoded-words. On a decoding error the undecoded text is kept and reported.
func decodeText(v, fallbackCharset, field string, p *problems) string {
	if v == "" {
		return ""
	}
	if !utf8.ValidString(v) {
		v = decodeBytes([]byte(v), fallbackCharset)
	}
	if !strings.Contains(v, "=?") {
		return v
	}
	dec, err := wordDecoder().DecodeHeader(v)
	if err != nil {
		p.addf("%s: %w", field, err)
		return v
	}
	return dec
}

// parseFrom returns the first From address as "Name <addr>", or the decoded header text when it
// does not parse as an address.
func parseFrom(v, fallbackCharset string, p *problems) string {
	if v == "" {
		return ""
	}
	if !utf8.ValidString(v) {
		v = decodeBytes([]byte(v), fallbackCharset)
	}
	parser := mail.AddressParser{WordDecoder: wordDecoder()}
	addrs, err := parser.ParseList(v)
	if err != nil || len(addrs) == 0 {
		p.addf("from: %s: %v", quoteSnippet([]byte(v)), err)
		return decodeText(v, fallbackCharset, "from", p)
	}
	return formatAddress(addrs[0])
}

// parseRecipients returns the To then Cc addresses. A field that does not parse as an address
// list is reported and split on the commas outside quotes and angle brackets, so that a search
// for a recipient still finds the message.
func parseRecipients(to, cc []string, fallbackCharset string, p *problems) []string {
	var out []string
	parser := mail.AddressParser{WordDecoder: wordDecoder()}
	for _, values := range [2][]string{to, cc} {
		for _, v := range values {
			if strings.TrimSpace(v) == "" || len(out) >= maxRecipients {
				continue
			}
			if !utf8.ValidString(v) {
				v = decodeBytes([]byte(v), fallbackCharset)
			}
			addrs, err := parser.ParseList(v)
			if err != nil {
				p.addf("recipients: %s: %v", quoteSnippet([]byte(v)), err)
				for _, part := range splitAddressList(v) {
					if part = strings.TrimSpace(decodeText(part, fallbackCharset, "recipients", p)); part != "" {
						out = append(out, part)
					}
				}
				continue
			}
			for _, a := range addrs {
				out = append(out, formatAddress(a))
			}
		}
	}
	if len(out) > maxRecipients {
		out = out[:maxRecipients]
	}
	return out
}

// formatAddress writes "Name <addr>" with the decoded name, quoting it only when it holds
// characters that would make the result ambiguous.
func formatAddress(a *mail.Address) string {
	name := strings.TrimSpace(a.Name)
	if name == "" {
		return a.Address
	}
	if strings.ContainsAny(name, `,;<>@"\`) {
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + a.Address + ">"
}

// splitAddressList splits on commas that are outside quoted strings, comments and angle
// brackets.
func splitAddressList(v string) []string {
	var parts []string
	start, depthAngle, depthParen, quoted := 0, 0, 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depthAngle++
		case c == '>' && depthAngle > 0:
			depthAngle--
		case c == '(':
			depthParen++
		case c == ')' && depthParen > 0:
			depthParen--
		case c == ',' && depthAngle == 0 && depthParen == 0:
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	if start < len(v) {
		parts = append(parts, v[start:])
	}
	return parts
}

// parseMessageID returns the msg-id without angle brackets. It is lenient on purpose (ids without
// '@' or with odd characters are common): the value is an identifier to match on, not to
// validate.
func parseMessageID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i+1:], '>'); j >= 0 {
			return strings.TrimSpace(v[i+1 : i+1+j])
		}
		v = v[i+1:]
	}
	if f := strings.Fields(v); len(f) > 0 {
		return strings.Trim(f[0], "<>")
	}
	return ""
}

// parseDate parses the Date header; an absent header is not an error, an unparseable one is.
func parseDate(v string, p *problems) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	// The RFC 5322 form almost every mailer writes, tried first: net/mail.ParseDate walks a list
	// of layouts and allocates an error for each miss, which dominated Parse's allocations.
	if t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", v); err == nil {
		return t
	}
	if t, err := mail.ParseDate(v); err == nil {
		return t
	}
	// Forms seen in real mail that net/mail.ParseDate rejects.
	extraLayouts := [...]string{
		"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
		"Mon, 2 Jan 2006 15:04:05 MST",
		"Mon, 2 Jan 06 15:04:05 -0700",
		"2 Jan 2006 15:04:05 MST",
		"Mon, 2 Jan 2006 15:04 -0700",
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 2 15:04:05 MST 2006",
		"Mon, 2 Jan 2006 15:04:05",
		time.RFC3339,
		"2006-01-02 15:04:05 -0700",
		"2006-01-02 15:04:05",
	}
	// Collapse runs of blanks and drop a leading "Mon," variant with no space after the comma.
	norm := strings.Join(strings.Fields(strings.Replace(v, ",", ", ", 1)), " ")
	for _, layout := range extraLayouts {
		if t, err := time.Parse(layout, norm); err == nil {
			return t
		}
	}
	p.addf("date: unparseable %s", quoteSnippet([]byte(v)))
	return time.Time{}
}

// quoteSnippet quotes at most a few dozen bytes of b for an error message: Go-quoted, so the
// error text is printable ASCII whatever the input.
func quoteSnippet(b []byte) string {
	const maxLen = 60
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > maxLen {
		return strconv.QuoteToASCII(string(b[:maxLen])) + "..."
	}
	return strconv.QuoteToASCII(string(b))
}
