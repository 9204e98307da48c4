// Package compose turns a draft (what a user or the API hands in as JSON) into a MIME message
// ready for submission, and its envelope. Everything that ends up in a header field is checked
// first: a draft that could inject a header field or a recipient is refused with an
// *InvalidError that names the field, never repaired silently.
package compose

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/emersion/go-message/mail"
)

// Address is an RFC 5322 address as a user writes it: "Name <a@example.com>" or
// "a@example.com".
type Address = string

// Attachment is one file of a draft. Content is base64 in JSON (encoding/json's []byte).
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type,omitempty"` // empty: application/octet-stream
	Content     []byte `json:"content"`
}

// Draft is a message as the user wrote it.
type Draft struct {
	From    Address   `json:"from"`
	To      []Address `json:"to,omitempty"`
	Cc      []Address `json:"cc,omitempty"`
	Bcc     []Address `json:"bcc,omitempty"` // envelope only: never written into the message
	Subject string    `json:"subject,omitempty"`
	Text    string    `json:"text,omitempty"`
	HTML    string    `json:"html,omitempty"`

	Attachments []Attachment `json:"attachments,omitempty"`
	// InReplyTo and References are Message-IDs with their angle brackets, as they appear in the
	// message replied to.
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
}

// Message is a composed message and its envelope.
type Message struct {
	Raw       []byte // the message, CRLF line ends, ready for DATA
	MessageID string // with angle brackets, as in the Message-Id field
	From      string // bare address, for MAIL FROM
	// Recipients are the bare addresses of To, Cc and Bcc in that order, each once: the RCPT TOs.
	Recipients []string
}

// Options are the parts of composing that are not the draft's.
type Options struct {
	// Now gives the Date; nil: time.Now.
	Now func() time.Time
	// Domain is the right-hand side of the Message-ID; empty: the domain of From.
	Domain string
	// Rand is the source of the Message-ID's randomness; nil: crypto/rand.
	Rand io.Reader
	// Draft allows a message without recipients: a draft saved before it is addressed.
	Draft bool
}

// InvalidError says which field of a draft was refused and why. Its text is meant for the user:
// it names the field and the reason and repeats nothing of the value.
type InvalidError struct {
	Field  string // the JSON name, with an index for lists: "to[1]", "attachments[0].filename"
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Compose checks d and writes it as a MIME message: text/plain, text/html or
// multipart/alternative for the text, inside multipart/mixed when there are attachments.
func Compose(d Draft, opts Options) (Message, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}

	from, err := parseAddress("from", d.From)
	if err != nil {
		return Message{}, err
	}
	to, err := parseAddresses("to", d.To)
	if err != nil {
		return Message{}, err
	}
	cc, err := parseAddresses("cc", d.Cc)
	if err != nil {
		return Message{}, err
	}
	bcc, err := parseAddresses("bcc", d.Bcc)
	if err != nil {
		return Message{}, err
	}
	rcpts := recipients(to, cc, bcc)
	if len(rcpts) == 0 && !opts.Draft {
		return Message{}, &InvalidError{Field: "to", Reason: "no recipient in to, cc or bcc"}
	}
	if err := headerText("subject", d.Subject); err != nil {
		return Message{}, err
	}
	var inReplyTo []string
	if d.InReplyTo != "" {
		id, err := msgID("in_reply_to", d.InReplyTo)
		if err != nil {
			return Message{}, err
		}
		inReplyTo = []string{id}
	}
	refs := make([]string, 0, len(d.References))
	for i, r := range d.References {
		id, err := msgID(fmt.Sprintf("references[%d]", i), r)
		if err != nil {
			return Message{}, err
		}
		refs = append(refs, id)
	}
	parts, err := attachmentHeaders(d.Attachments)
	if err != nil {
		return Message{}, err
	}

	domain := opts.Domain
	if domain == "" {
		domain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	if err := headerText("domain", domain); err != nil || domain == "" || strings.ContainsAny(domain, "<>@ \t\"()[]\\,;:") {
		return Message{}, fmt.Errorf("compose: unusable Message-ID domain %q", domain)
	}
	id, err := randomID(opts.Rand)
	if err != nil {
		return Message{}, err
	}
	id += "@" + domain

	var h gomail.Header
	h.SetDate(opts.Now())
	h.SetAddressList("From", []*mail.Address{from})
	h.SetAddressList("To", to)
	h.SetAddressList("Cc", cc)
	if strings.Contains(d.Subject, "=?") {
		// Text that looks like an encoded word would be decoded by every reader; go-message
		// encodes only non-ASCII text, so such a subject is encoded here, whole.
		h.Set("Subject", encodedWords(d.Subject))
	} else {
		h.SetSubject(d.Subject)
	}
	h.SetMessageID(id)
	h.SetMsgIDList("In-Reply-To", inReplyTo)
	h.SetMsgIDList("References", refs)

	var buf bytes.Buffer
	if err := writeBody(&buf, h, d, parts); err != nil {
		return Message{}, fmt.Errorf("compose: write message: %w", err)
	}
	bare := make([]string, len(rcpts))
	for i, a := range rcpts {
		bare[i] = a.Address
	}
	return Message{Raw: buf.Bytes(), MessageID: "<" + id + ">", From: from.Address, Recipients: bare}, nil
}

// writeBody writes the header and the body: the text as a single part or an alternative, and
// the attachments after it in a multipart/mixed.
func writeBody(w io.Writer, h gomail.Header, d Draft, attachments []gomail.AttachmentHeader) error {
	if len(attachments) == 0 {
		if d.HTML == "" || d.Text == "" {
			ct, body := "text/plain", d.Text
			if d.HTML != "" {
				ct, body = "text/html", d.HTML
			}
			h.SetContentType(ct, map[string]string{"charset": "utf-8"})
			wc, err := gomail.CreateSingleInlineWriter(w, h)
			if err != nil {
				return err
			}
			return writeClose(wc, []byte(body))
		}
		iw, err := gomail.CreateInlineWriter(w, h)
		if err != nil {
			return err
		}
		if err := writeAlternative(iw, d); err != nil {
			return err
		}
		return iw.Close()
	}

	mw, err := gomail.CreateWriter(w, h)
	if err != nil {
		return err
	}
	switch {
	case d.Text != "" && d.HTML != "":
		iw, err := mw.CreateInline()
		if err != nil {
			return err
		}
		if err := writeAlternative(iw, d); err != nil {
			return err
		}
		if err := iw.Close(); err != nil {
			return err
		}
	case d.HTML != "":
		if err := writeInline(mw.CreateSingleInline, "text/html", d.HTML); err != nil {
			return err
		}
	case d.Text != "":
		if err := writeInline(mw.CreateSingleInline, "text/plain", d.Text); err != nil {
			return err
		}
	}
	for i, ah := range attachments {
		wc, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		if err := writeClose(wc, d.Attachments[i].Content); err != nil {
			return err
		}
	}
	return mw.Close()
}

func writeAlternative(iw *gomail.InlineWriter, d Draft) error {
	if err := writeInline(iw.CreatePart, "text/plain", d.Text); err != nil {
		return err
	}
	return writeInline(iw.CreatePart, "text/html", d.HTML)
}

func writeInline(create func(gomail.InlineHeader) (io.WriteCloser, error), ct, body string) error {
	var ih gomail.InlineHeader
	ih.SetContentType(ct, map[string]string{"charset": "utf-8"})
	wc, err := create(ih)
	if err != nil {
		return err
	}
	return writeClose(wc, []byte(body))
}

func writeClose(wc io.WriteCloser, b []byte) error {
	if _, err := wc.Write(b); err != nil {
		_ = wc.Close()
		return err
	}
	return wc.Close()
}

// attachmentHeaders checks every attachment and gives its part header.
func attachmentHeaders(as []Attachment) ([]gomail.AttachmentHeader, error) {
	hs := make([]gomail.AttachmentHeader, 0, len(as))
	for i, a := range as {
		field := fmt.Sprintf("attachments[%d]", i)
		if a.Filename == "" {
			return nil, &InvalidError{Field: field + ".filename", Reason: "missing"}
		}
		if err := headerText(field+".filename", a.Filename); err != nil {
			return nil, err
		}
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		if err := headerText(field+".content_type", ct); err != nil {
			return nil, err
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !strings.Contains(mt, "/") {
			return nil, &InvalidError{Field: field + ".content_type", Reason: "not a media type (want type/subtype)"}
		}
		// A multipart or message type would make readers parse the attachment's content as
		// parts of this message, and RFC 2046 forbids base64 for both.
		if strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
			return nil, &InvalidError{Field: field + ".content_type", Reason: mt + " cannot be an attachment's type (use application/octet-stream)"}
		}
		var h gomail.AttachmentHeader
		// Parameters are dropped: a charset other than UTF-8 is refused by the writer, and
		// none of the others belongs to an attachment carried in base64.
		h.SetContentType(mt, nil)
		h.SetFilename(a.Filename)
		hs = append(hs, h)
	}
	return hs, nil
}

func parseAddresses(field string, in []Address) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(in))
	for i, s := range in {
		a, err := parseAddress(fmt.Sprintf("%s[%d]", field, i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAddress parses one address and refuses what SMTP or the header could not carry as given:
// line breaks and control characters (in the text or in a display name decoded from RFC 2047)
// and non-ASCII mailbox names, which would need SMTPUTF8.
func parseAddress(field, s string) (*mail.Address, error) {
	if s == "" {
		if field == "from" {
			return nil, &InvalidError{Field: field, Reason: "missing"}
		}
		return nil, &InvalidError{Field: field, Reason: "empty address"}
	}
	if err := headerText(field, s); err != nil {
		return nil, err
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, &InvalidError{Field: field, Reason: "not an address (want \"Name <user@example.com>\" or \"user@example.com\")"}
	}
	if err := headerText(field+" display name", a.Name); err != nil {
		return nil, err
	}
	for _, r := range a.Address {
		if r >= utf8.RuneSelf || r < ' ' || r == 0x7f {
			return nil, &InvalidError{Field: field, Reason: "the address has characters other than ASCII (internationalised addresses are not supported)"}
		}
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return nil, &InvalidError{Field: field, Reason: "not an address (want \"Name <user@example.com>\" or \"user@example.com\")"}
	}
	// Domain literals ("user@[192.0.2.1]") are valid RFC 5322 but no submission server
	// relays to them; refusing keeps the envelope and the header one shape.
	if strings.ContainsAny(a.Address[at+1:], "[]") {
		return nil, &InvalidError{Field: field, Reason: "address literals are not supported"}
	}
	return a, nil
}

// recipients gives to, cc and bcc in order, each address once (the domain compared without
// case, the local part exactly, as RFC 5321 §2.4 says).
func recipients(lists ...[]*mail.Address) []*mail.Address {
	seen := map[string]bool{}
	var out []*mail.Address
	for _, l := range lists {
		for _, a := range l {
			at := strings.LastIndexByte(a.Address, '@')
			key := a.Address[:at] + "@" + strings.ToLower(a.Address[at+1:])
			if !seen[key] {
				seen[key] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// msgID checks a Message-ID given with its angle brackets and returns it without them.
func msgID(field, s string) (string, error) {
	if err := headerText(field, s); err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return "", &InvalidError{Field: field, Reason: "not a Message-ID (want <id@domain>)"}
	}
	id := s[1 : len(s)-1]
	left, right, ok := strings.Cut(id, "@")
	if !ok || left == "" || right == "" {
		return "", &InvalidError{Field: field, Reason: "not a Message-ID (want <id@domain>)"}
	}
	for _, r := range id {
		// RFC 5322 msg-id: printable ASCII without specials that would end or split it.
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("<>()\\,;:\"", r) {
			return "", &InvalidError{Field: field, Reason: "not a Message-ID (want <id@domain>)"}
		}
	}
	return id, nil
}

// headerText refuses what could end a header field or confuse a reader: CR, LF, NUL and the
// other control characters but TAB, and invalid UTF-8.
func headerText(field, s string) error {
	if !utf8.ValidString(s) {
		return &InvalidError{Field: field, Reason: "not valid UTF-8"}
	}
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n':
			return &InvalidError{Field: field, Reason: "contains a line break"}
		case r == 0:
			return &InvalidError{Field: field, Reason: "contains a NUL character"}
		case (r < ' ' && r != '\t') || r == 0x7f:
			return &InvalidError{Field: field, Reason: "contains a control character"}
		}
	}
	return nil
}

// encodedWords writes s as RFC 2047 "B" encoded words of at most 75 characters each (45 bytes
// of text), split between runes.
func encodedWords(s string) string {
	var words []string
	for s != "" {
		n := min(len(s), 45)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// randomID is the left part of a Message-ID: 128 random bits, in lower-case base32.
func randomID(r io.Reader) (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("compose: Message-ID randomness: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}
