package mailparse_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"

	"mailsync/internal/mailparse"
)

// crlf joins lines with CRLF, the wire form of a message.
func crlf(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n"))
}

// encode converts UTF-8 text to a legacy charset, for building test messages.
func encode(t testing.TB, enc encoding.Encoding, s string) string {
	t.Helper()
	out, err := enc.NewEncoder().String(s)
	if err != nil {
		t.Fatalf("encode %q: %v", s, err)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// want lists the expectations of one case; zero values are not checked except where noted.
type want struct {
	messageID string
	subject   string
	from      string
	to        []string
	date      time.Time
	body      string // exact BodyText when set
	contains  string // substring of BodyText when set
	absent    string // must not appear in BodyText when set
	snippet   string
	err       bool // whether a parse error is expected (always checked)
	errHas    string
}

type parseCase struct {
	name string
	raw  []byte
	want want
}

func commonHeaders(extra ...string) []string {
	return append([]string{
		"From: Alice Martin <alice@example.org>",
		"To: Bob Chen <bob@example.net>",
		"Subject: quarterly report",
		"Date: Mon, 01 Sep 2025 10:11:12 +0200",
		"Message-ID: <m1@example.org>",
		"MIME-Version: 1.0",
	}, extra...)
}

func parseCases(t testing.TB) []parseCase {
	t.Helper()
	sep := func(lines ...string) []string { return lines }
	join := func(parts ...[]string) []byte {
		var all []string
		for _, p := range parts {
			all = append(all, p...)
		}
		return crlf(all...)
	}
	return []parseCase{
		{
			name: "plain",
			raw: join(commonHeaders("Content-Type: text/plain; charset=utf-8"), sep("",
				"Hello Bob,", "", "the   report is attached.", "-- ", "Alice", "")),
			want: want{
				messageID: "m1@example.org",
				subject:   "quarterly report",
				from:      "Alice Martin <alice@example.org>",
				to:        []string{"Bob Chen <bob@example.net>"},
				date:      time.Date(2025, 9, 1, 8, 11, 12, 0, time.UTC),
				body:      "Hello Bob,\n\nthe   report is attached.\n-- \nAlice",
				snippet:   "Hello Bob, the report is attached. -- Alice",
			},
		},
		{
			name: "no content type is text/plain",
			raw:  crlf("Subject: hi", "", "just text"),
			want: want{subject: "hi", body: "just text"},
		},
		{
			name: "multipart/alternative prefers plain",
			raw: join(commonHeaders(`Content-Type: multipart/alternative; boundary="alt"`), sep("",
				"preamble", "--alt", "Content-Type: text/plain; charset=utf-8", "",
				"plain version", "--alt", "Content-Type: text/html; charset=utf-8", "",
				"<p>html version</p>", "--alt--", "")),
			want: want{body: "plain version"},
		},
		{
			name: "multipart/alternative with html first still finds plain",
			raw: join(commonHeaders(`Content-Type: multipart/alternative; boundary=alt`), sep("",
				"--alt", "Content-Type: text/html", "", "<p>html version</p>",
				"--alt", "Content-Type: text/plain", "", "plain version", "--alt--", "")),
			want: want{body: "plain version"},
		},
		{
			name: "empty plain part falls back to html",
			raw: join(commonHeaders(`Content-Type: multipart/alternative; boundary=alt`), sep("",
				"--alt", "Content-Type: text/plain", "", "  ", "--alt", "Content-Type: text/html", "",
				"<p>the real content</p>", "--alt--", "")),
			want: want{body: "the real content"},
		},
		{
			name: "sloppy From field is not an mbox line",
			raw:  crlf("From : Alice <alice@example.org>", "Subject: s", "", "b"),
			want: want{from: "Alice <alice@example.org>", subject: "s", body: "b"},
		},
		{
			name: "html only",
			raw: join(commonHeaders("Content-Type: text/html; charset=utf-8"), sep("",
				"<html><head><title>T</title><style>p{color:red}</style></head>",
				"<body><p>Caf&eacute;   &amp; <b>bar</b></p><div>second<br>line</div>",
				"<script>alert(1)</script>a &lt; b</body></html>")),
			want: want{body: "Café & bar\n\nsecond\nline\na < b", absent: "alert"},
		},
		{
			name: "mixed with nested alternative html only and attachment",
			raw: join(commonHeaders(`Content-Type: multipart/mixed; boundary="mix"`), sep("",
				"--mix", `Content-Type: multipart/alternative; boundary="alt"`, "",
				"--alt", "Content-Type: text/html", "", "<p>only html here</p>", "--alt--",
				"--mix", "Content-Type: application/pdf", "Content-Disposition: attachment; filename=a.pdf",
				"Content-Transfer-Encoding: base64", "", b64("%PDF-1.4 secret attachment bytes"),
				"--mix--", "")),
			want: want{body: "only html here", absent: "PDF"},
		},
		{
			name: "attachment before text is skipped",
			raw: join(commonHeaders(`Content-Type: multipart/mixed; boundary="b1"`), sep("",
				"--b1", "Content-Type: text/plain; name=notes.txt", "Content-Disposition: attachment; filename=notes.txt", "",
				"attached notes, not the body",
				"--b1", "Content-Type: text/plain; charset=utf-8", "", "the real body",
				"--b1--", "")),
			want: want{body: "the real body"},
		},
		{
			name: "quoted-printable latin-1",
			raw: join(commonHeaders("Content-Type: text/plain; charset=iso-8859-1",
				"Content-Transfer-Encoding: quoted-printable"), sep("",
				"synchronis=E9 r=E9sum=E9 with a soft=", "break")),
			want: want{body: "synchronisé résumé with a softbreak"},
		},
		{
			name: "base64 utf-8",
			raw: join(commonHeaders("Content-Type: text/plain; charset=UTF-8",
				"Content-Transfer-Encoding: base64"), sep("", b64("Grüße aus 北京"), "")),
			want: want{body: "Grüße aus 北京"},
		},
		{
			name: "windows-1252 body",
			raw: join(commonHeaders("Content-Type: text/plain; charset=windows-1252"), sep("",
				encode(t, charmap.Windows1252, "“smart quotes” cost 5 €"))),
			want: want{body: "“smart quotes” cost 5 €"},
		},
		{
			name: "shift_jis body",
			raw: join(commonHeaders("Content-Type: text/plain; charset=Shift_JIS"), sep("",
				encode(t, japanese.ShiftJIS, "こんにちは、世界"))),
			want: want{body: "こんにちは、世界"},
		},
		{
			name: "koi8-r body",
			raw: join(commonHeaders("Content-Type: text/plain; charset=koi8-r"), sep("",
				encode(t, charmap.KOI8R, "Привет, мир"))),
			want: want{body: "Привет, мир"},
		},
		{
			name: "encoded-word headers in several charsets",
			raw: crlf(
				"From: =?utf-8?b?"+b64("Chloé Dubois")+"?= <chloe@example.org>",
				"To: =?koi8-r?b?"+b64(encode(t, charmap.KOI8R, "Дмитрий"))+"?= <dmitri@example.net>,",
				" =?iso-8859-1?q?Eve_M=FCller?= <eve@example.net>",
				"Cc: =?shift_jis?b?"+b64(encode(t, japanese.ShiftJIS, "佐藤"))+"?= <hana@example.jp>",
				"Subject: =?utf-8?q?R=C3=A9=3A?= =?windows-1252?q?=93quoted=94?=",
				"", "body"),
			want: want{
				from:    "Chloé Dubois <chloe@example.org>",
				to:      []string{"Дмитрий <dmitri@example.net>", "Eve Müller <eve@example.net>", "佐藤 <hana@example.jp>"},
				subject: "Ré:“quoted”",
				body:    "body",
			},
		},
		{
			name: "8-bit latin-1 headers take the declared charset",
			raw: crlf(
				"From: "+encode(t, charmap.ISO8859_1, "Chloé Dubois")+" <chloe@example.org>",
				"Subject: "+encode(t, charmap.ISO8859_1, "Réunion à 10h"),
				"Content-Type: text/plain; charset=iso-8859-1",
				"", encode(t, charmap.ISO8859_1, "à bientôt")),
			want: want{from: "Chloé Dubois <chloe@example.org>", subject: "Réunion à 10h", body: "à bientôt"},
		},
		{
			name: "8-bit utf-8 headers (RFC 6532)",
			raw:  crlf("From: 张伟 <zhang@example.cn>", "Subject: 进度 — update", "", "ok"),
			want: want{from: "张伟 <zhang@example.cn>", subject: "进度 — update", body: "ok"},
		},
		{
			name: "undeclared 8-bit body falls back to windows-1252",
			raw:  crlf("Subject: x", "", encode(t, charmap.Windows1252, "naïve café")),
			want: want{body: "naïve café"},
		},
		{
			name: "missing headers",
			raw:  crlf("X-Mailer: nothing useful", "", "only a body"),
			want: want{body: "only a body", snippet: "only a body"},
		},
		{
			name: "empty message",
			raw:  nil,
			want: want{},
		},
		{
			name: "folded headers and group recipients",
			raw: crlf("Subject: a very", "\tlong subject", "To: undisclosed-recipients:;",
				"Cc: \"Doe, John\" <john@example.com>, plain@example.com", "", "b"),
			want: want{subject: "a very long subject",
				to: []string{`"Doe, John" <john@example.com>`, "plain@example.com"}, body: "b"},
		},
		{
			name: "unclosed boundary keeps the text read",
			raw: join(commonHeaders(`Content-Type: multipart/mixed; boundary="never-closed"`,
				"X-Broken header line without colon"), sep("",
				"--never-closed", "Content-Type: text/plain; charset=x-unknown-charset", "",
				"sync mailbox server invoice")),
			want: want{contains: "sync mailbox server invoice", subject: "quarterly report", err: true, errHas: "header"},
		},
		{
			name: "boundary never found falls back to the raw body",
			raw: join(commonHeaders(`Content-Type: multipart/mixed; boundary="declared"`), sep("",
				"--other", "Content-Type: text/plain", "", "text under the wrong boundary", "--other--", "")),
			want: want{contains: "text under the wrong boundary", err: true, errHas: "never found"},
		},
		{
			name: "multipart without boundary",
			raw:  join(commonHeaders(`Content-Type: multipart/mixed`), sep("", "some text")),
			want: want{body: "some text", err: true, errHas: "without boundary"},
		},
		{
			name: "bad base64 keeps what decoded",
			raw: join(commonHeaders("Content-Type: text/plain", "Content-Transfer-Encoding: base64"),
				sep("", b64("good part")+"!!!not base64###")),
			want: want{contains: "good part", err: true},
		},
		{
			name: "unknown transfer encoding",
			raw:  join(commonHeaders("Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode"), sep("", "begin 644 f")),
			want: want{body: "begin 644 f", err: true, errHas: "encoding"},
		},
		{
			name: "unparseable date and from",
			raw:  crlf("From: <<<broken", "Date: the day after tomorrow", "Message-ID: no-brackets@x", "", "b"),
			want: want{from: "<<<broken", messageID: "no-brackets@x", body: "b", err: true, errHas: "date"},
		},
		{
			name: "lenient date forms",
			raw:  crlf("Date: Mon,  1 Sep 2025 10:11:12 GMT", "", "b"),
			want: want{date: time.Date(2025, 9, 1, 10, 11, 12, 0, time.UTC), body: "b"},
		},
		{
			name: "garbage bytes",
			raw:  []byte("\x00\xff\xfe garbage \x80\x81 without header\x00\r\nmore\x00"),
			want: want{contains: "garbage", err: true, errHas: "no header"},
		},
		{
			name: "LF only line endings",
			raw:  []byte("Subject: unix\nContent-Type: text/plain\n\nline one\nline two\n"),
			want: want{subject: "unix", body: "line one\nline two"},
		},
		{
			name: "mbox From line is ignored",
			raw:  crlf("From alice@example.org Mon Sep  1 10:11:12 2025", "Subject: mbox", "", "b"),
			want: want{subject: "mbox", body: "b"},
		},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mailparse.Parse(tc.raw)
			checkMessage(t, got, err, tc.want)
		})
	}
}

func checkMessage(t *testing.T, got mailparse.Message, err error, w want) {
	t.Helper()
	checkValid(t, got)
	if (err != nil) != w.err {
		t.Errorf("error = %v, want error: %v", err, w.err)
	}
	if err != nil {
		var perr *mailparse.Error
		if !errors.As(err, &perr) || len(perr.Problems) == 0 {
			t.Errorf("error %v is not a *mailparse.Error with problems", err)
		}
		if w.errHas != "" && !strings.Contains(err.Error(), w.errHas) {
			t.Errorf("error %q does not mention %q", err, w.errHas)
		}
	}
	checkField(t, "MessageID", got.MessageID, w.messageID)
	checkField(t, "Subject", got.Subject, w.subject)
	checkField(t, "From", got.From, w.from)
	if w.to != nil && strings.Join(got.To, "|") != strings.Join(w.to, "|") {
		t.Errorf("To = %q, want %q", got.To, w.to)
	}
	if !w.date.IsZero() && !got.Date.Equal(w.date) {
		t.Errorf("Date = %v, want %v", got.Date, w.date)
	}
	if w.body != "" && got.BodyText != w.body {
		t.Errorf("BodyText = %q, want %q", got.BodyText, w.body)
	}
	if w.contains != "" && !strings.Contains(got.BodyText, w.contains) {
		t.Errorf("BodyText = %q, want it to contain %q", got.BodyText, w.contains)
	}
	if w.absent != "" && strings.Contains(got.BodyText, w.absent) {
		t.Errorf("BodyText = %q, must not contain %q", got.BodyText, w.absent)
	}
	if w.snippet != "" && got.Snippet != w.snippet {
		t.Errorf("Snippet = %q, want %q", got.Snippet, w.snippet)
	}
}

func checkField(t *testing.T, name, got, want string) {
	t.Helper()
	if want != "" && got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

// checkValid asserts the package's promise: every string is valid UTF-8 without NUL, and the
// caps hold.
func checkValid(t testing.TB, m mailparse.Message) {
	t.Helper()
	all := append([]string{m.MessageID, m.Subject, m.From, m.Snippet, m.BodyText}, m.To...)
	for _, s := range all {
		if !utf8.ValidString(s) {
			t.Errorf("invalid UTF-8 in %q", s)
		}
		if strings.IndexByte(s, 0) >= 0 {
			t.Errorf("NUL byte in %q", s)
		}
	}
	if len(m.BodyText) > mailparse.MaxBodyText {
		t.Errorf("BodyText is %d bytes, cap is %d", len(m.BodyText), mailparse.MaxBodyText)
	}
	if n := utf8.RuneCountInString(m.Snippet); n > mailparse.SnippetRunes {
		t.Errorf("Snippet is %d runes, cap is %d", n, mailparse.SnippetRunes)
	}
}

func TestParseCapsHugeBody(t *testing.T) {
	line := strings.Repeat("é", 40) + "\r\n" // 82 bytes, 2-byte runes so a cut can split one
	raw := crlf("Subject: huge", "Content-Type: text/plain; charset=utf-8", "", strings.Repeat(line, 50_000))
	got, err := mailparse.Parse(raw)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkValid(t, got)
	// The cap applies to the decoded text before CRLF becomes LF, so a little less remains.
	if len(got.BodyText) < mailparse.MaxBodyText*9/10 {
		t.Errorf("BodyText is %d bytes, want close to the cap %d", len(got.BodyText), mailparse.MaxBodyText)
	}
	if n := utf8.RuneCountInString(got.Snippet); n != mailparse.SnippetRunes {
		t.Errorf("Snippet has %d runes, want %d", n, mailparse.SnippetRunes)
	}
}

func TestParseDeepNestingIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := range 40 {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b" + string(rune('A'+i%26)) + strings.Repeat("x", i) + "\"\r\n\r\n")
		b.WriteString("--b" + string(rune('A'+i%26)) + strings.Repeat("x", i) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	got, err := mailparse.Parse([]byte(b.String()))
	checkValid(t, got)
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("error = %v, want a nesting error", err)
	}
	if got.Subject != "deep" {
		t.Errorf("Subject = %q, want %q", got.Subject, "deep")
	}
}
