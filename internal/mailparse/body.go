package mailparse

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// entityHeader is what the body search needs to know about one MIME entity.
type entityHeader struct {
	contentType      string
	transferEncoding string
	disposition      string
}

// bodyFinder walks the MIME tree looking for the text body. It stops at the first inline
// text/plain part; an HTML part is kept as a fallback, and the search ends once the
// multipart/alternative that held it is done, so the attachments after it are never read.
type bodyFinder struct {
	p        *problems
	fallback string // charset for undeclared or undecodable 8-bit text

	plain, html       string
	hasPlain, hasHTML bool

	// sizeHint sizes the read buffer: the whole body for a single-part message, a typical text
	// part otherwise (an attachment-sized buffer for a small text part would be waste).
	sizeHint int

	parts int
	// topNoParts records that the top-level multipart yielded no part at all (a boundary that
	// never appears), in which case the raw body is the best text there is.
	topNoParts bool
}

// extractBody returns the message's body text, capped and normalised.
func extractBody(h header, body []byte, p *problems) string {
	f := bodyFinder{p: p, fallback: h.fallbackCharset, sizeHint: len(body)}
	eh := entityHeader{contentType: h.contentType, transferEncoding: h.transferEncoding}
	f.visit(eh, bytes.NewReader(body), 0)
	switch {
	case f.hasPlain:
		return f.plain
	case f.hasHTML:
		return f.html
	case f.topNoParts:
		if len(body) > MaxBodyText {
			body = body[:MaxBodyText]
		}
		return bodyText(bytes.Clone(body), f.fallback) // raw is the caller's: normalise a copy
	}
	return ""
}

// visit looks at one entity and reports whether the search is over.
func (f *bodyFinder) visit(h entityHeader, r io.Reader, depth int) bool {
	mediaType, params := f.mediaType(h.contentType)
	if strings.HasPrefix(mediaType, "multipart/") {
		return f.visitMultipart(strings.TrimPrefix(mediaType, "multipart/"), params["boundary"], r, depth)
	}
	if isAttachment(h.disposition) {
		return false
	}
	switch mediaType {
	case "text/plain", "text":
		b, err := readCapped(f.decoder(mediaType, params["charset"], h.transferEncoding, r), MaxBodyText, f.sizeHint)
		if err != nil {
			f.p.addf("text/plain body: %w", err)
		}
		text := bodyText(b, f.fallback)
		if text == "" {
			// An empty plain part next to a full HTML one is common: keep looking.
			return false
		}
		f.plain, f.hasPlain = text, true
		return true
	case "text/html":
		if f.hasHTML {
			return false
		}
		b, err := readCapped(f.decoder(mediaType, params["charset"], h.transferEncoding, r), maxHTML, f.sizeHint)
		if err != nil {
			f.p.addf("text/html body: %w", err)
		}
		f.html, f.hasHTML = capText(htmlToText(decodeBytes(b, f.fallback)), MaxBodyText), true
	}
	return false
}

func (f *bodyFinder) visitMultipart(subtype, boundary string, r io.Reader, depth int) bool {
	if depth >= maxDepth {
		f.p.addf("mime: multipart nested deeper than %d", maxDepth)
		return true
	}
	if boundary == "" {
		f.p.addf("mime: multipart/%s without boundary", subtype)
		f.topNoParts = depth == 0
		return false
	}
	f.sizeHint = min(f.sizeHint, 16<<10)
	mr := textproto.NewMultipartReader(r, boundary)
	n := 0
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.p.addf("mime: multipart/%s part %d: %w", subtype, n+1, err)
			break
		}
		n++
		f.parts++
		if f.parts > maxParts {
			f.p.addf("mime: more than %d parts, no text body among them", maxParts)
			return true
		}
		eh := entityHeader{
			contentType:      part.Header.Get("Content-Type"),
			transferEncoding: part.Header.Get("Content-Transfer-Encoding"),
			disposition:      part.Header.Get("Content-Disposition"),
		}
		if f.visit(eh, part, depth+1) {
			return true
		}
		if f.hasHTML && subtype != "alternative" {
			return true
		}
	}
	if n == 0 {
		if depth == 0 {
			f.topNoParts = true
		}
		f.p.addf("mime: multipart/%s: boundary %q never found", subtype, boundary)
	}
	return false
}

// mediaType parses a Content-Type value leniently: an absent one is text/plain (RFC 2045), and
// one that mime.ParseMediaType rejects keeps its type and whatever parameters can be read.
func (f *bodyFinder) mediaType(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "text/plain", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params
	}
	f.p.addf("content-type %s: %w", quoteSnippet([]byte(v)), err)
	typ, rest, _ := strings.Cut(v, ";")
	params = map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		if _, dup := params[k]; !dup && k != "" {
			params[k] = val
		}
	}
	return strings.ToLower(strings.TrimSpace(typ)), params
}

// decoder undoes the transfer encoding and converts the charset to UTF-8 with go-message. An
// unknown encoding or charset is reported, and the body comes back as far as it could be decoded
// (decodeBytes then repairs any invalid UTF-8).
func (f *bodyFinder) decoder(mediaType, cs, transferEncoding string, r io.Reader) io.Reader {
	var h message.Header
	if cs != "" {
		if ct := mime.FormatMediaType(mediaType, map[string]string{"charset": cs}); ct != "" {
			h.Set("Content-Type", ct)
		}
	}
	if transferEncoding != "" {
		h.Set("Content-Transfer-Encoding", transferEncoding)
	}
	e, err := message.New(h, r)
	if err != nil {
		f.p.addf("%s body: %w", mediaType, err)
	}
	if e == nil {
		return r
	}
	return e.Body
}

func isAttachment(disposition string) bool {
	d, _, _ := strings.Cut(disposition, ";")
	return strings.EqualFold(strings.TrimSpace(d), "attachment")
}

// readCapped reads at most limit bytes of r. Reaching the limit is not an error: the text is
// simply cut (the raw message keeps everything).
func readCapped(r io.Reader, limit, sizeHint int) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(limit, max(sizeHint, 512))+bytes.MinRead))
	_, err := buf.ReadFrom(io.LimitReader(r, int64(limit)))
	return buf.Bytes(), err
}
