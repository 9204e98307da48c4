package compose_test

import (
	"errors"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"mailsync/internal/compose"
)

// allowedTopFields are the only header fields a composed message may have: anything else in the
// parsed header was injected by the draft.
var allowedTopFields = map[string]bool{
	"Date": true, "From": true, "To": true, "Cc": true, "Subject": true, "Message-Id": true,
	"In-Reply-To": true, "References": true, "Mime-Version": true, "Content-Type": true,
	"Content-Transfer-Encoding": true,
}

// FuzzCompose feeds Compose what a JSON draft can hold (any string in any field, several
// addresses per list separated by "|") and checks that a message it accepts parses back with
// exactly the drafted recipients, the envelope it returned and no header field it did not write.
func FuzzCompose(f *testing.F) {
	f.Add("Ann <ann@example.com>", "bob@example.org|Carl <carl@example.net>", "", "dora@example.com", "Hello", "text", "", "", "", "", "")
	f.Add("ann@example.com", "\"Ærø, Bo\" <bo@example.org>", "x@y.z", "", "Grüße =?utf-8?q?x?=", "t", "<p>h</p>", "Übersicht.pdf", "application/pdf", "<a@b>", "<a@b>|<c@d>")
	f.Add("ann@example.com", "bob@example.org\r\nBcc: eve@evil.example", "", "", "s\nX-Evil: 1", "", "", "a\r\nb", "text/plain\nX: y", "<a@b>\nX: y", "")
	f.Add("=?utf-8?b?Qm9iDQpCY2M6IGV2ZUBldmlsLmV4YW1wbGU=?= <a@b.c>", "(comment) bob@example.org", "\"quoted local\"@example.org", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, fromIn, to, cc, bcc, subject, text, html, filename, ctype, inReplyTo, refs string) {
		d := compose.Draft{
			From: fromIn, To: split(to), Cc: split(cc), Bcc: split(bcc),
			Subject: subject, Text: text, HTML: html,
			InReplyTo: inReplyTo, References: split(refs),
		}
		if filename != "" || ctype != "" {
			d.Attachments = []compose.Attachment{{Filename: filename, ContentType: ctype, Content: []byte(text)}}
		}
		m, err := compose.Compose(d, opts())
		if err != nil {
			var ie *compose.InvalidError
			if !errors.As(err, &ie) && !strings.Contains(err.Error(), "Message-ID domain") {
				t.Fatalf("Compose refused with an untyped error: %v", err)
			}
			return
		}
		p := readBack(t, m.Raw)
		for fields := p.header.Fields(); fields.Next(); {
			if !allowedTopFields[fields.Key()] {
				t.Fatalf("header field %q in the message (value %q)", fields.Key(), fields.Value())
			}
		}
		if n := len(p.header.Values("To")) + len(p.header.Values("Cc")) + len(p.header.Values("From")) + len(p.header.Values("Subject")); n > 4 {
			t.Fatalf("a header field repeated:\n%s", m.Raw)
		}

		// The header's To and Cc are exactly the drafted ones, and the envelope is To, Cc and
		// Bcc without repeats.
		want := map[string][]*mail.Address{"To": mustParse(t, d.To), "Cc": mustParse(t, d.Cc)}
		for key, wantList := range want {
			got, err := p.header.AddressList(key)
			if err != nil {
				t.Fatalf("%s does not parse back: %v\n%s", key, err, m.Raw)
			}
			if len(got) != len(wantList) {
				t.Fatalf("%s = %v, want %v", key, got, wantList)
			}
			for i := range got {
				if *got[i] != *wantList[i] {
					t.Fatalf("%s[%d] = %v, want %v", key, i, got[i], wantList[i])
				}
			}
		}
		var all []string
		for _, l := range [][]string{d.To, d.Cc, d.Bcc} {
			for _, a := range mustParse(t, l) {
				if !slices.ContainsFunc(all, func(s string) bool { return strings.EqualFold(s, a.Address) }) {
					all = append(all, a.Address)
				}
			}
		}
		if len(m.Recipients) != len(all) {
			t.Fatalf("Recipients = %q, want %q", m.Recipients, all)
		}
		for i := range all {
			if !strings.EqualFold(m.Recipients[i], all[i]) {
				t.Fatalf("Recipients = %q, want %q", m.Recipients, all)
			}
		}
		from, err := p.header.AddressList("From")
		if err != nil || len(from) != 1 || from[0].Address != m.From {
			t.Fatalf("From = %v (%v), envelope from %q", from, err, m.From)
		}
		if id, err := p.header.MessageID(); err != nil || "<"+id+">" != m.MessageID {
			t.Fatalf("Message-Id = %q (%v), want %q", id, err, m.MessageID)
		}
		// The subject reads back as written, but for the blanks at its ends a header cannot keep.
		if got, err := p.header.Subject(); err != nil || (got != subject && got != strings.Trim(subject, " \t")) {
			t.Fatalf("Subject = %q (%v), want %q", got, err, subject)
		}
		if len(d.Attachments) == 1 && (len(p.parts) == 0 || p.parts[len(p.parts)-1].filename != filename) {
			t.Fatalf("attachment %q not read back: %+v", filename, p.parts)
		}
	})
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "|")
}

func mustParse(t *testing.T, l []string) []*mail.Address {
	t.Helper()
	out := make([]*mail.Address, 0, len(l))
	for _, s := range l {
		a, err := mail.ParseAddress(s)
		if err != nil {
			t.Fatalf("Compose accepted %q, which net/mail does not parse: %v", s, err)
		}
		out = append(out, a)
	}
	return out
}
