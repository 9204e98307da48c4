package mailgen

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"mime"
	"mime/quotedprintable"
	"net/url"
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

// The share of each kind of message, as cumulative thresholds on one draw in [0, 1).
const (
	shareMalformed   = 0.01
	shareAttachments = 0.10 // cumulative: 9 %
	shareAlternative = 0.48
	shareHTMLOnly    = 0.50
	shareLatin1      = 0.53
	shareWin1252     = 0.545
	shareKOI8R       = 0.56
	shareISO2022JP   = 0.57
	shareShiftJIS    = 0.58
)

// Attachment sizes are log-normal around exp(attachMu) bytes with a long tail, capped.
const (
	attachMu    = 10.3
	attachSigma = 1.2
	attachMax   = 2_000_000
)

const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// composer writes one message.
type composer struct {
	r      *rng
	g      *generator
	i      int
	buf    bytes.Buffer
	from   person
	to     []person
	cc     []person
	date   time.Time
	reply  bool
	folder string
}

func (g *generator) mail(i int) Mail {
	r := newRNG(g.seed, i)
	c := &composer{r: r, g: g, i: i}
	c.folder = g.folder(r)
	c.pickPeople()
	zone := pick(r, zones)
	secs := r.intn(730 * 24 * 3600)
	c.date = g.end.Add(-time.Duration(secs) * time.Second).In(time.FixedZone("", zone))
	c.reply = r.chance(0.25)
	c.buf.Grow(4096)

	malformed := false
	switch kind := r.float(); {
	case kind < shareMalformed:
		c.malformed()
		malformed = true
	case kind < shareAttachments:
		c.withAttachments()
	case kind < shareAlternative:
		c.alternative()
	case kind < shareHTMLOnly:
		c.htmlOnly()
	case kind < shareLatin1:
		c.legacy("iso-8859-1", charmap.ISO8859_1, frenchLines, "quoted-printable")
	case kind < shareWin1252:
		c.legacy("windows-1252", charmap.Windows1252, windows1252Lines, "8bit")
	case kind < shareKOI8R:
		c.legacy("koi8-r", charmap.KOI8R, russianLines, "8bit")
	case kind < shareISO2022JP:
		c.legacy("iso-2022-jp", japanese.ISO2022JP, japaneseLines, "7bit")
	case kind < shareShiftJIS:
		c.legacy("shift_jis", japanese.ShiftJIS, japaneseLines, "base64")
	default:
		c.plain()
	}
	return Mail{
		Index:     i,
		Folder:    c.folder,
		Flags:     c.flags(),
		Date:      c.date.Add(time.Duration(r.between(2, 600)) * time.Second).UTC(),
		Raw:       c.buf.Bytes(), // the composer is per message: no copy needed
		Malformed: malformed,
	}
}

func (c *composer) sent() bool {
	return strings.EqualFold(c.folder, "Sent") || c.folder == "已发送" || strings.HasSuffix(c.folder, "/Sent")
}

func (c *composer) pickPeople() {
	other := pick(c.r, people)
	if c.sent() {
		c.from, c.to = owner, []person{other}
	} else {
		c.from, c.to = other, []person{owner}
	}
	if c.r.chance(0.2) {
		c.to = append(c.to, pick(c.r, people))
	}
	if c.r.chance(0.25) {
		for range c.r.between(1, 3) {
			c.cc = append(c.cc, pick(c.r, people))
		}
	}
}

func (c *composer) flags() []string {
	var f []string
	if c.sent() || c.r.chance(0.7) {
		f = append(f, `\Seen`)
	}
	if c.r.chance(0.2) && !c.sent() {
		f = append(f, `\Answered`)
	}
	if c.r.chance(0.05) {
		f = append(f, `\Flagged`)
	}
	return f
}

// line writes one header or body line with its CRLF.
func (c *composer) line(parts ...string) {
	for _, p := range parts {
		c.buf.WriteString(p)
	}
	c.buf.WriteString("\r\n")
}

// commonHeaders writes the trace, addressing and identity headers most messages have; subject
// is written as given (already encoded).
func (c *composer) commonHeaders(subject string) {
	r := c.r
	c.line("Return-Path: <", c.from.email, ">")
	hops := r.between(1, 3)
	for h := range hops {
		when := c.date.Add(time.Duration(hops-h) * time.Second).Format(dateLayout)
		c.line(fmt.Sprintf("Received: from mail%d.%s (mail%d.%s [192.0.2.%d])", h+1, domainOf(c.from.email),
			h+1, domainOf(c.from.email), r.between(1, 254)))
		c.line(fmt.Sprintf("\tby mx%d.example.org (Postfix) with ESMTPS id %X", h+1, r.next()>>20))
		c.line("\tfor <", c.to[0].email, ">; ", when)
	}
	if r.chance(0.3) {
		c.dkim()
	}
	c.line("Date: ", c.date.Format(dateLayout))
	c.line("From: ", address(c.from))
	c.addressLine("To", c.to)
	if len(c.cc) > 0 {
		c.addressLine("Cc", c.cc)
	}
	c.line("Subject: ", subject)
	c.line(fmt.Sprintf("Message-ID: <mg.%016x.%d@%s>", uint64(c.g.seed), c.i, domainOf(c.from.email)))
	if c.reply {
		parent := fmt.Sprintf("<%x.%d@%s>", r.next(), r.intn(1_000_000), domainOf(c.to[0].email))
		c.line("In-Reply-To: ", parent)
		c.line("References: ", parent)
	}
	if r.chance(0.4) {
		c.line("X-Mailer: ", pick(r, mailers))
	}
	c.line("MIME-Version: 1.0")
}

func (c *composer) dkim() {
	sig := make([]byte, 256)
	c.r.fill(sig)
	b := base64.StdEncoding.EncodeToString(sig)
	c.line("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=", domainOf(c.from.email), "; s=mail;")
	c.line("\th=from:to:subject:date:message-id; bh=", b[:44], ";")
	prefix := "\tb="
	for len(b) > 0 {
		n := min(len(b), 72)
		c.line(prefix, b[:n])
		b, prefix = b[n:], "\t "
	}
}

func (c *composer) addressLine(key string, ps []person) {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = address(p)
	}
	c.line(key, ": ", strings.Join(parts, ",\r\n\t"))
}

// address formats a person, RFC 2047 encoding a non-ASCII name (B or Q, as mailers vary).
func address(p person) string {
	switch {
	case p.name == "":
		return "<" + p.email + ">"
	case isASCII(p.name):
		if strings.ContainsAny(p.name, `'.,`) {
			return `"` + p.name + `" <` + p.email + ">"
		}
		return p.name + " <" + p.email + ">"
	case len(p.name)%2 == 0:
		return mime.BEncoding.Encode("utf-8", p.name) + " <" + p.email + ">"
	default:
		return mime.QEncoding.Encode("utf-8", p.name) + " <" + p.email + ">"
	}
}

func domainOf(email string) string {
	_, d, _ := strings.Cut(email, "@")
	return d
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// subject makes an English subject, sometimes a reply, sometimes with a non-ASCII tail, and
// returns it encoded for the header.
func (c *composer) subject() string {
	n := c.r.between(2, 8)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = pick(c.r, words)
	}
	s := strings.ToUpper(ws[0][:1]) + ws[0][1:] + " " + strings.Join(ws[1:], " ")
	if c.r.chance(0.2) {
		s += pick(c.r, subjectTails)
	}
	if c.reply {
		s = "Re: " + s
	}
	if isASCII(s) {
		return s
	}
	// Fold between encoded-words, as mailers do for long subjects.
	if c.r.chance(0.5) {
		return strings.ReplaceAll(mime.BEncoding.Encode("utf-8", s), "?= =?", "?=\r\n =?")
	}
	return strings.ReplaceAll(mime.QEncoding.Encode("utf-8", s), "?= =?", "?=\r\n =?")
}

// text makes a body: greeting, wrapped paragraphs, a closing and signature, and for replies a
// quoted previous message. Lines end in CRLF and are at most ~76 characters.
func (c *composer) text() string {
	r := c.r
	nWords := int(r.lognormal(5.5, 1.0)) + 5
	nWords = min(nWords, 40_000)
	var b strings.Builder
	b.Grow(nWords * 8)
	first := c.to[0].name
	if first == "" {
		first = "team"
	}
	first, _, _ = strings.Cut(first, " ")
	b.WriteString(pick(r, greetings) + " " + first + ",\r\n\r\n")
	col := 0
	sentence := 0
	for w := range nWords {
		word := pick(r, words)
		if sentence == 0 {
			word = strings.ToUpper(word[:1]) + word[1:]
		}
		if col > 0 && col+1+len(word) > 72 {
			b.WriteString("\r\n")
			col = 0
		} else if col > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
		sentence++
		if sentence > 6 && r.chance(0.2) || w == nWords-1 {
			b.WriteByte('.')
			col++
			sentence = 0
			if r.chance(0.15) {
				b.WriteString("\r\n\r\n")
				col = 0
			}
		}
	}
	b.WriteString("\r\n\r\n" + pick(r, closings) + "\r\n")
	b.WriteString(c.from.name + "\r\n")
	if c.reply {
		b.WriteString("\r\nOn " + c.date.Add(-time.Duration(r.between(600, 200_000))*time.Second).Format("Mon, 2 Jan 2006 at 15:04") +
			", " + c.to[0].email + " wrote:\r\n")
		for range r.between(2, 12) {
			b.WriteString("> ")
			for k := range r.between(4, 11) {
				if k > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(pick(r, words))
			}
			b.WriteString("\r\n")
		}
	}
	return b.String()
}

// htmlOf renders a text body as the HTML a mail client would send along.
func htmlOf(text string) string {
	var b strings.Builder
	b.Grow(len(text)*5/4 + 300)
	b.WriteString("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n")
	b.WriteString("<style>body{font-family:Arial,sans-serif;font-size:14px} blockquote{color:#555}</style></head>\r\n<body>\r\n")
	for para := range strings.SplitSeq(strings.TrimRight(text, "\r\n"), "\r\n\r\n") {
		if strings.HasPrefix(para, "> ") || strings.Contains(para, "\r\n> ") {
			b.WriteString("<blockquote>")
		} else {
			b.WriteString("<p>")
		}
		lines := strings.Split(para, "\r\n")
		for i, l := range lines {
			if i > 0 {
				b.WriteString("<br>\r\n")
			}
			b.WriteString(html.EscapeString(strings.TrimPrefix(l, "> ")))
		}
		if strings.HasPrefix(para, "> ") || strings.Contains(para, "\r\n> ") {
			b.WriteString("</blockquote>\r\n")
		} else {
			b.WriteString("</p>\r\n")
		}
	}
	b.WriteString("</body></html>\r\n")
	return b.String()
}

func (c *composer) boundary(tag string) string {
	return fmt.Sprintf("----=_%s_%012x", tag, c.r.next()>>16)
}

// textPart writes a UTF-8 text part body with a fitting transfer encoding.
func (c *composer) textPart(contentType, body string) {
	if !isASCII(body) && c.r.chance(0.5) || c.r.chance(0.2) {
		c.line("Content-Type: ", contentType, "; charset=utf-8")
		c.line("Content-Transfer-Encoding: quoted-printable")
		c.line()
		c.buf.WriteString(qp(body))
		return
	}
	c.line("Content-Type: ", contentType, "; charset=utf-8")
	if isASCII(body) {
		c.line("Content-Transfer-Encoding: 7bit")
	} else {
		c.line("Content-Transfer-Encoding: 8bit")
	}
	c.line()
	c.buf.WriteString(body)
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(s)) // writes to a bytes.Buffer cannot fail
	_ = w.Close()
	return b.String()
}

func (c *composer) plain() {
	c.commonHeaders(c.subject())
	c.textPart("text/plain", c.text())
}

func (c *composer) htmlOnly() {
	c.commonHeaders(c.subject())
	c.textPart("text/html", htmlOf(c.text()))
}

func (c *composer) alternative() {
	c.commonHeaders(c.subject())
	b := c.boundary("alt")
	c.line(`Content-Type: multipart/alternative; boundary="`, b, `"`)
	c.line()
	c.alternativeBody(b)
}

func (c *composer) alternativeBody(b string) {
	text := c.text()
	c.line("--", b)
	c.textPart("text/plain", text)
	c.line()
	c.line("--", b)
	c.textPart("text/html", htmlOf(text))
	c.line()
	c.line("--", b, "--")
}

func (c *composer) withAttachments() {
	c.commonHeaders(c.subject())
	mixed := c.boundary("mix")
	c.line(`Content-Type: multipart/mixed; boundary="`, mixed, `"`)
	c.line()
	c.line("This is a multi-part message in MIME format.")
	c.line("--", mixed)
	if c.r.chance(0.5) {
		alt := c.boundary("alt")
		c.line(`Content-Type: multipart/alternative; boundary="`, alt, `"`)
		c.line()
		c.alternativeBody(alt)
	} else {
		c.textPart("text/plain", c.text())
		c.line()
	}
	n := 1
	if c.r.chance(0.15) {
		n = 2
	}
	for range n {
		c.line("--", mixed)
		c.attachment()
	}
	c.line("--", mixed, "--")
}

// attachmentKinds are the file types attached, with the magic bytes they start with.
var attachmentKinds = []struct{ ext, contentType, magic string }{
	{"pdf", "application/pdf", "%PDF-1.7\n"},
	{"jpg", "image/jpeg", "\xff\xd8\xff\xe0\x00\x10JFIF\x00"},
	{"png", "image/png", "\x89PNG\r\n\x1a\n"},
	{"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "PK\x03\x04"},
	{"csv", "text/csv", ""},
}

func (c *composer) attachment() {
	r := c.r
	kind := pick(r, attachmentKinds)
	size := min(int(r.lognormal(attachMu, attachSigma)), attachMax)
	var data []byte
	if kind.ext == "csv" {
		data = c.csv(size)
		size = len(data)
	} else {
		size += len(kind.magic)
	}
	name := fmt.Sprintf("%s-%d.%s", pick(r, words), c.i, kind.ext)
	disposition := fmt.Sprintf(`attachment; filename="%s"; size=%d`, name, size)
	if r.chance(0.15) {
		name = "résumé-" + name
		disposition = "attachment; filename*=utf-8''" + url.PathEscape(name)
	}
	c.line("Content-Type: ", kind.contentType, `; name="`, mime.QEncoding.Encode("utf-8", name), `"`)
	c.line("Content-Disposition: ", disposition)
	c.line("Content-Transfer-Encoding: base64")
	c.line()
	if data != nil {
		c.base64Lines(data)
		return
	}
	c.randomBase64Lines(kind.magic, size)
}

// randomBase64Lines writes size bytes, magic then random, base64-encoded, without holding them:
// attachments are most of a corpus's bytes, so this is the generator's hot loop.
func (c *composer) randomBase64Lines(magic string, size int) {
	const perLine = 57
	chunk := make([]byte, perLine*64)
	c.buf.Grow(size*4/3 + size/perLine*2 + 4)
	first := true
	for size > 0 {
		n := min(len(chunk), size)
		c.r.fill(chunk[:n])
		if first {
			copy(chunk, magic)
			first = false
		}
		c.base64Lines(chunk[:n])
		size -= n
	}
}

func (c *composer) csv(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 64)
	b.WriteString("date,customer,item,amount\r\n")
	for b.Len() < size {
		fmt.Fprintf(&b, "2025-%02d-%02d,%s,%s,%d.%02d\r\n", c.r.between(1, 12), c.r.between(1, 28),
			pick(c.r, people).email, pick(c.r, words), c.r.intn(10_000), c.r.intn(100))
	}
	return b.Bytes()
}

// base64Lines writes data base64-encoded in 76-character CRLF lines.
func (c *composer) base64Lines(data []byte) {
	const perLine = 57 // bytes per 76-character line
	var line [76]byte
	c.buf.Grow(len(data)*4/3 + len(data)/perLine*2 + 4)
	for len(data) > 0 {
		n := min(perLine, len(data))
		base64.StdEncoding.Encode(line[:], data[:n])
		c.buf.Write(line[:base64.StdEncoding.EncodedLen(n)])
		c.buf.WriteString("\r\n")
		data = data[n:]
	}
}

// legacy writes a message whose body (and subject) are in a legacy charset.
func (c *composer) legacy(charset string, enc encoding.Encoding, lines []string, transfer string) {
	encoder := encoding.ReplaceUnsupported(enc.NewEncoder())
	subjectText := pick(c.r, lines)
	rawSubject, _ := encoder.String(subjectText)
	// An encoded-word in the message's own charset, as the sending mailer wrote it.
	c.commonHeaders("=?" + charset + "?B?" + base64.StdEncoding.EncodeToString([]byte(rawSubject)) + "?=")
	var body strings.Builder
	for range c.r.between(3, 30) {
		body.WriteString(pick(c.r, lines))
		if c.r.chance(0.3) {
			body.WriteString("\r\n")
		} else {
			body.WriteByte(' ')
		}
	}
	body.WriteString("\r\n\r\n" + c.from.name + "\r\n")
	raw, _ := encoder.String(body.String())
	c.line("Content-Type: text/plain; charset=", charset)
	c.line("Content-Transfer-Encoding: ", transfer)
	c.line()
	switch transfer {
	case "quoted-printable":
		c.buf.WriteString(qp(raw))
	case "base64":
		c.base64Lines([]byte(raw))
	default:
		c.buf.WriteString(raw)
	}
}

// malformed writes one of the broken shapes real mailboxes hold. Each is still appendable
// (CRLF, no NUL) and each gives a parser something to report.
func (c *composer) malformed() {
	switch c.r.intn(4) {
	case 0: // a boundary that is never closed, a header line without colon, an unknown charset
		c.commonHeaders(c.subject())
		c.line(`Content-Type: multipart/mixed; boundary="never-closed"`)
		c.line("X-Broken header line without colon")
		c.line()
		c.line("--never-closed")
		c.line("Content-Type: text/plain; charset=x-unknown-charset")
		c.line()
		c.buf.WriteString(c.text())
	case 1: // the declared boundary differs from the one used
		c.commonHeaders(c.subject())
		c.line(`Content-Type: multipart/alternative; boundary="declared-boundary"`)
		c.line()
		c.alternativeBody("actual-boundary")
	case 2: // raw Latin-1 bytes and a broken encoded-word in headers, an undecodable date
		c.line("From: ", address(c.from))
		c.line("To: ", address(c.to[0]))
		c.line("Subject: R\xe9union =?utf-8?b?!!!broken?= ", pick(c.r, words))
		c.line("Date: ", fmt.Sprintf("%d Smarch %d 25:61:00 +9999", c.r.between(32, 99), c.date.Year()))
		c.line(fmt.Sprintf("Message-ID: <mg.%016x.%d@broken.invalid>", uint64(c.g.seed), c.i))
		c.line("Content-Type: text/plain; charset=iso-8859-1")
		c.line()
		c.buf.WriteString(c.text())
	default: // an unknown transfer encoding on a truncated body
		c.commonHeaders(c.subject())
		c.line("Content-Type: text/plain; charset=utf-8")
		c.line("Content-Transfer-Encoding: x-uuencode")
		c.line()
		c.line("begin 644 notes.txt")
		c.line("M5&AI<R!I<R!A('1R=6YC871E9\"!U=65N8V]D960@8F]D>0``")
	}
}
