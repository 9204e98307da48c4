// Package mailparse turns the raw RFC 5322 bytes of one message into the fields mailsync stores
// and searches (Message-ID, subject, addresses, date, snippet, body text).
//
// Its contract is that bad mail is one message's problem, never the sync's: Parse never panics,
// always returns every field it could recover, and reports what it could not as an *Error. Every
// returned string is valid UTF-8 without NUL bytes, so it can go into SQLite or a PostgreSQL text
// column unchanged, whatever the message contained.
//
// Charsets: importing this package imports github.com/emersion/go-message/charset, whose init sets
// the process-wide message.CharsetReader so go-message can decode every charset x/text knows
// (ISO-8859-*, Windows-125x, Shift_JIS, KOI8-R, GB18030, ...). That is a global side effect of
// the dependency, made here on purpose so that the package that needs it is the one that pulls it
// in; nothing else in mailsync should rely on it.
//
// Speed: Parse reads only the header fields it needs and stops reading MIME parts as soon as it has
// the text body, so attachments that follow are never decoded. Memory is bounded by the caps below,
// not by the size of the message.
package mailparse

import (
	"fmt"
	"strings"
	"time"
)

// Caps that bound the work and memory spent on one message.
const (
	// MaxBodyText is the largest BodyText returned, in bytes; longer bodies are cut at a rune
	// boundary. Body text is for display and search: a quarter MiB is more than any person writes,
	// and the exact bytes are always kept in the raw message.
	MaxBodyText = 256 << 10
	// SnippetRunes is the longest Snippet, in runes (characters).
	SnippetRunes = 200
	// maxHTML bounds how much of an HTML part is read before it is stripped to text.
	maxHTML = 1 << 20
	// maxParts bounds how many MIME parts are looked at before giving up on finding a text body.
	maxParts = 256
	// maxDepth bounds multipart nesting.
	maxDepth = 16
)

// Message holds the fields mailsync stores for one message.
type Message struct {
	// MessageID is the Message-ID without angle brackets, "" if absent.
	MessageID string
	// Subject is the RFC 2047-decoded subject.
	Subject string
	// From is the first From address as "Name <addr>" (or "addr"), or the decoded header text
	// when it is not a parseable address.
	From string
	// To lists the To and Cc recipients, in that order, formatted like From.
	To []string
	// Date is the Date header in the zone it was written in; zero if absent or unparseable.
	Date time.Time
	// Snippet is the start of BodyText with every run of white space collapsed to one space.
	Snippet string
	// BodyText is the text/plain body (or the HTML body stripped to text if there is no plain
	// one), converted to UTF-8, with LF line endings, capped at MaxBodyText bytes.
	BodyText string
}

// Error reports what Parse could not understand. The Message returned with it still holds every
// field that could be recovered, so callers store both.
type Error struct {
	Problems []error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("mailparse: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see each problem.
func (e *Error) Unwrap() []error { return e.Problems }

// problems collects the non-fatal errors met while parsing one message.
type problems struct {
	list []error
}

// maxProblems keeps the error text short: the first few problems say enough.
const maxProblems = 8

func (p *problems) add(err error) {
	if err == nil || len(p.list) >= maxProblems {
		return
	}
	p.list = append(p.list, err)
}

func (p *problems) addf(format string, args ...any) {
	p.add(fmt.Errorf(format, args...))
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: p.list}
}

// Parse extracts the stored fields from one raw message. It returns as many fields as it could
// and, if anything could not be parsed, a non-nil *Error describing what failed; a message with
// missing headers is not an error (the fields are just empty). Parse never panics: a panic in a
// dependency is recovered and reported as an error.
func Parse(raw []byte) (msg Message, err error) {
	var probs problems
	defer func() {
		if r := recover(); r != nil {
			probs.addf("internal panic: %v", r)
		}
		msg = msg.sanitized()
		err = probs.err()
	}()

	hdr, body := splitHeader(raw, &probs)
	msg.MessageID = parseMessageID(hdr.messageID)
	msg.Subject = decodeText(hdr.subject, hdr.fallbackCharset, "subject", &probs)
	msg.From = parseFrom(hdr.from, hdr.fallbackCharset, &probs)
	msg.To = parseRecipients(hdr.to, hdr.cc, hdr.fallbackCharset, &probs)
	msg.Date = parseDate(hdr.date, &probs)

	text := extractBody(hdr, body, &probs)
	msg.BodyText = text
	msg.Snippet = snippet(text, SnippetRunes)
	return msg, nil // the deferred function sets err from probs
}

// sanitized guarantees the package's promise on every string: valid UTF-8 and no NUL.
func (m Message) sanitized() Message {
	m.MessageID = cleanString(m.MessageID)
	m.Subject = cleanString(m.Subject)
	m.From = cleanString(m.From)
	for i := range m.To {
		m.To[i] = cleanString(m.To[i])
	}
	m.Snippet = cleanString(m.Snippet)
	m.BodyText = cleanString(m.BodyText)
	return m
}
