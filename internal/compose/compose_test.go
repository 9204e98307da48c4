package compose_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"mailsync/internal/compose"
)

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func opts() compose.Options {
	return compose.Options{Now: func() time.Time { return fixedNow }, Domain: "mailsync.test"}
}

// part is what a test expects of one leaf of the parsed message.
type part struct {
	contentType string // media type
	filename    string // attachments only
	body        string
}

// parsed is a composed message read back with go-message's mail reader.
type parsed struct {
	header gomail.Header
	parts  []part
}

// readBack parses raw as a mail reader does and fails the test if it cannot.
func readBack(t testing.TB, raw []byte) parsed {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("bare LF in the message:\n%s", raw)
	}
	// Headers encoded (RFC 2047), text quoted-printable, attachments base64: no server needs
	// 8BITMIME or SMTPUTF8 for it.
	for i, b := range raw {
		if b >= 0x80 || b == 0 {
			t.Fatalf("byte %#x at %d: the message is not 7-bit:\n%s", b, i, raw)
		}
	}
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read back: %v\n%s", err, raw)
	}
	p := parsed{header: r.Header}
	for {
		pt, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read back part: %v\n%s", err, raw)
		}
		body, err := io.ReadAll(pt.Body)
		if err != nil {
			t.Fatalf("read back body: %v", err)
		}
		var got part
		switch h := pt.Header.(type) {
		case *gomail.InlineHeader:
			got.contentType, _, _ = h.ContentType()
		case *gomail.AttachmentHeader:
			got.contentType, _, _ = h.ContentType()
			got.filename, _ = h.Filename()
		}
		got.body = string(body)
		p.parts = append(p.parts, got)
	}
	return p
}

func addrs(t testing.TB, h gomail.Header, key string) []string {
	t.Helper()
	l, err := h.AddressList(key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	var out []string
	for _, a := range l {
		out = append(out, a.String())
	}
	return out
}

func TestCompose(t *testing.T) {
	tests := []struct {
		name        string
		draft       compose.Draft
		contentType string // top-level media type
		parts       []part
		rcpts       []string
		check       func(t *testing.T, p parsed)
	}{
		{
			name:        "plain",
			draft:       compose.Draft{From: "Ann <ann@example.com>", To: []string{"bob@example.org"}, Subject: "Hello", Text: "Hi Bob,\nsee you.\n"},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: "Hi Bob,\r\nsee you.\r\n"}},
			rcpts:       []string{"bob@example.org"},
		},
		{
			name: "alternative",
			draft: compose.Draft{From: "ann@example.com", To: []string{"Bob <bob@example.org>"}, Cc: []string{"carl@example.net"},
				Subject: "Grüße aus Köln", Text: "plain ünïcode", HTML: "<p>html ünïcode</p>"},
			contentType: "multipart/alternative",
			parts:       []part{{contentType: "text/plain", body: "plain ünïcode"}, {contentType: "text/html", body: "<p>html ünïcode</p>"}},
			rcpts:       []string{"bob@example.org", "carl@example.net"},
			check: func(t *testing.T, p parsed) {
				if raw := p.header.Get("Subject"); !strings.HasPrefix(raw, "=?utf-8?") {
					t.Errorf("Subject not RFC 2047 encoded: %q", raw)
				}
			},
		},
		{
			name:        "subject that looks encoded",
			draft:       compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}, Subject: "literally =?utf-8?q?x?= and " + strings.Repeat("ü", 40), Text: "x"},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: "x"}},
			rcpts:       []string{"bob@example.org"},
		},
		{
			name:        "html only",
			draft:       compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}, HTML: "<b>x</b>"},
			contentType: "text/html",
			parts:       []part{{contentType: "text/html", body: "<b>x</b>"}},
			rcpts:       []string{"bob@example.org"},
		},
		{
			name: "attachments with a non-ASCII filename",
			draft: compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}, Text: "see attached", HTML: "<p>see attached</p>",
				Attachments: []compose.Attachment{
					{Filename: "Übersicht 2026.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 \x00\x01\xff")},
					{Filename: "notes.txt", ContentType: "text/plain; charset=iso-8859-1", Content: []byte("abc")},
					{Filename: "blob", Content: []byte{0, 1, 2}},
				}},
			contentType: "multipart/mixed",
			parts: []part{
				{contentType: "text/plain", body: "see attached"},
				{contentType: "text/html", body: "<p>see attached</p>"},
				{contentType: "application/pdf", filename: "Übersicht 2026.pdf", body: "%PDF-1.4 \x00\x01\xff"},
				{contentType: "text/plain", filename: "notes.txt", body: "abc"},
				{contentType: "application/octet-stream", filename: "blob", body: "\x00\x01\x02"},
			},
			rcpts: []string{"bob@example.org"},
		},
		{
			name: "reply headers",
			draft: compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}, Subject: "Re: plan", Text: "ok",
				InReplyTo: "<b2@example.org>", References: []string{"<a1@example.org>", "<b2@example.org>"}},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: "ok"}},
			rcpts:       []string{"bob@example.org"},
			check: func(t *testing.T, p parsed) {
				if got, _ := p.header.MsgIDList("In-Reply-To"); !slices.Equal(got, []string{"b2@example.org"}) {
					t.Errorf("In-Reply-To = %q", got)
				}
				if got, _ := p.header.MsgIDList("References"); !slices.Equal(got, []string{"a1@example.org", "b2@example.org"}) {
					t.Errorf("References = %q", got)
				}
			},
		},
		{
			name: "bcc only in the envelope, duplicates once",
			draft: compose.Draft{From: "ann@example.com", To: []string{"bob@example.org", "Bob again <bob@EXAMPLE.org>"},
				Cc: []string{"carl@example.net"}, Bcc: []string{"dora@example.com", "carl@example.net"}, Text: "x"},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: "x"}},
			rcpts:       []string{"bob@example.org", "carl@example.net", "dora@example.com"},
			check: func(t *testing.T, p parsed) {
				if p.header.Has("Bcc") {
					t.Errorf("Bcc in the header: %q", p.header.Get("Bcc"))
				}
				if got := addrs(t, p.header, "To"); len(got) != 2 {
					t.Errorf("To = %q, want both as written", got)
				}
			},
		},
		{
			name:        "no text at all",
			draft:       compose.Draft{From: "ann@example.com", Bcc: []string{"bob@example.org"}},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: ""}},
			rcpts:       []string{"bob@example.org"},
			check: func(t *testing.T, p parsed) {
				if p.header.Has("To") || p.header.Has("Cc") {
					t.Errorf("empty To or Cc written: %q %q", p.header.Get("To"), p.header.Get("Cc"))
				}
			},
		},
		{
			name:        "non-ASCII display name",
			draft:       compose.Draft{From: "Zoë Ünal <zoe@example.com>", To: []string{"\"Ærø, Bo\" <bo@example.org>"}, Text: "x"},
			contentType: "text/plain",
			parts:       []part{{contentType: "text/plain", body: "x"}},
			rcpts:       []string{"bo@example.org"},
			check: func(t *testing.T, p parsed) {
				if raw := p.header.Get("From"); !strings.Contains(raw, "=?utf-8?") {
					t.Errorf("From name not RFC 2047 encoded: %q", raw)
				}
				l, err := p.header.AddressList("To")
				if err != nil || len(l) != 1 || l[0].Name != "Ærø, Bo" || l[0].Address != "bo@example.org" {
					t.Errorf("To = %v, %v", l, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compose.Compose(tt.draft, opts())
			if err != nil {
				t.Fatalf("Compose: %v", err)
			}
			p := readBack(t, m.Raw)
			if ct, _, _ := p.header.ContentType(); ct != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.contentType)
			}
			if !slices.Equal(m.Recipients, tt.rcpts) {
				t.Errorf("Recipients = %q, want %q", m.Recipients, tt.rcpts)
			}
			if len(p.parts) != len(tt.parts) {
				t.Fatalf("parts = %+v, want %+v", p.parts, tt.parts)
			}
			for i := range tt.parts {
				if p.parts[i] != tt.parts[i] {
					t.Errorf("part %d = %+v, want %+v", i, p.parts[i], tt.parts[i])
				}
			}
			checkEnvelopeHeader(t, tt.draft, m, p.header)
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

// checkEnvelopeHeader checks what every composed message has: Date, MIME-Version, the
// Message-ID given back, From and Subject as drafted.
func checkEnvelopeHeader(t *testing.T, d compose.Draft, m compose.Message, h gomail.Header) {
	t.Helper()
	if got, err := h.Date(); err != nil || !got.Equal(fixedNow) {
		t.Errorf("Date = %v, %v; want %v", got, err, fixedNow)
	}
	if h.Get("Mime-Version") != "1.0" {
		t.Errorf("MIME-Version = %q", h.Get("Mime-Version"))
	}
	id, err := h.MessageID()
	if err != nil || "<"+id+">" != m.MessageID || !strings.HasSuffix(id, "@mailsync.test") || len(id) < 20 {
		t.Errorf("Message-Id = %q (%v), Message.MessageID = %q", id, err, m.MessageID)
	}
	if got, _ := h.Subject(); got != d.Subject {
		t.Errorf("Subject = %q, want %q", got, d.Subject)
	}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != m.From {
		t.Errorf("From = %v (%v), Message.From = %q", from, err, m.From)
	}
}

func TestComposeMessageIDs(t *testing.T) {
	d := compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}}
	a, err := compose.Compose(d, compose.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := compose.Compose(d, compose.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.MessageID == b.MessageID {
		t.Errorf("two drafts got the same Message-ID %s", a.MessageID)
	}
	if !strings.HasSuffix(a.MessageID, "@example.com>") {
		t.Errorf("Message-ID %s: want the From domain when Options.Domain is empty", a.MessageID)
	}
	if _, err := compose.Compose(d, compose.Options{Rand: strings.NewReader("short")}); err == nil {
		t.Error("Compose with an exhausted Rand: no error")
	}
}

func TestComposeRefuses(t *testing.T) {
	ok := func() compose.Draft {
		return compose.Draft{From: "ann@example.com", To: []string{"bob@example.org"}, Subject: "s", Text: "t"}
	}
	tests := []struct {
		name  string
		edit  func(d *compose.Draft)
		field string
	}{
		{"no from", func(d *compose.Draft) { d.From = "" }, "from"},
		{"no recipient", func(d *compose.Draft) { d.To = nil }, "to"},
		{"subject CRLF", func(d *compose.Draft) { d.Subject = "hi\r\nBcc: eve@evil.example" }, "subject"},
		{"subject LF", func(d *compose.Draft) { d.Subject = "hi\nX: y" }, "subject"},
		{"subject NUL", func(d *compose.Draft) { d.Subject = "hi\x00" }, "subject"},
		{"subject bad UTF-8", func(d *compose.Draft) { d.Subject = "hi\xff" }, "subject"},
		{"to with a header after it", func(d *compose.Draft) { d.To = []string{"bob@example.org\r\nBcc: eve@evil.example"} }, "to[0]"},
		{"from CR", func(d *compose.Draft) { d.From = "ann@example.com\r" }, "from"},
		{"cc two in one", func(d *compose.Draft) { d.Cc = []string{"a@example.org, b@example.org"} }, "cc[0]"},
		{"bcc not an address", func(d *compose.Draft) { d.Bcc = []string{"ok@example.org", "nobody"} }, "bcc[1]"},
		{"empty to", func(d *compose.Draft) { d.To = []string{""} }, "to[0]"},
		{"encoded line break in a display name", func(d *compose.Draft) {
			d.To = []string{"=?utf-8?b?Qm9iDQpCY2M6IGV2ZUBldmlsLmV4YW1wbGU=?= <bob@example.org>"}
		}, "to[0] display name"},
		{"non-ASCII mailbox", func(d *compose.Draft) { d.To = []string{"bøb@example.org"} }, "to[0]"},
		{"address literal", func(d *compose.Draft) { d.To = []string{"bob@[192.0.2.1]"} }, "to[0]"},
		{"in-reply-to LF", func(d *compose.Draft) { d.InReplyTo = "<a@b>\nBcc: eve@evil.example" }, "in_reply_to"},
		{"in-reply-to without brackets", func(d *compose.Draft) { d.InReplyTo = "a@b" }, "in_reply_to"},
		{"in-reply-to two ids", func(d *compose.Draft) { d.InReplyTo = "<a@b> <c@d>" }, "in_reply_to"},
		{"references CR", func(d *compose.Draft) { d.References = []string{"<a@b>", "<c@d>\r"} }, "references[1]"},
		{"filename CRLF", func(d *compose.Draft) {
			d.Attachments = []compose.Attachment{{Filename: "a.txt\r\nBcc: eve@evil.example", Content: []byte("x")}}
		}, "attachments[0].filename"},
		{"filename missing", func(d *compose.Draft) { d.Attachments = []compose.Attachment{{Content: []byte("x")}} }, "attachments[0].filename"},
		{"content type LF", func(d *compose.Draft) {
			d.Attachments = []compose.Attachment{{Filename: "a", ContentType: "text/plain\nBcc: eve@evil.example"}}
		}, "attachments[0].content_type"},
		{"content type not a type", func(d *compose.Draft) {
			d.Attachments = []compose.Attachment{{Filename: "a", ContentType: "plain"}}
		}, "attachments[0].content_type"},
		{"content type multipart", func(d *compose.Draft) {
			d.Attachments = []compose.Attachment{{Filename: "a", ContentType: "multipart/mixed; boundary=x"}}
		}, "attachments[0].content_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ok()
			tt.edit(&d)
			m, err := compose.Compose(d, opts())
			var ie *compose.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Compose = %q, %v; want an *InvalidError", m.Raw, err)
			}
			if ie.Field != tt.field || ie.Reason == "" {
				t.Errorf("InvalidError = %+v, want field %q and a reason", ie, tt.field)
			}
			if strings.Contains(err.Error(), "evil") {
				t.Errorf("error text repeats the value: %q", err)
			}
		})
	}
}
