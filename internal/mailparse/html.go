package mailparse

import (
	"html"
	"strings"
)

// htmlToText strips an HTML body to readable text for display and search. It is a small tag
// skipper, not an HTML parser: good enough for mail bodies, linear in the input, and it never
// fails. Script, style, head and title contents are dropped; block elements become line breaks;
// entities are decoded; white space collapses as a browser would collapse it.
func htmlToText(s string) string {
	var b strings.Builder
	b.Grow(len(s) / 2)
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			writeHTMLText(&b, s[i:i+j])
			i += j
			continue
		}
		rest := s[i:]
		if strings.HasPrefix(rest, "<!--") {
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				break
			}
			i += 4 + end + 3
			continue
		}
		name, closing, ok := tagName(rest)
		if !ok {
			// A '<' that does not open a tag is text.
			b.WriteByte('<')
			i++
			continue
		}
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			break
		}
		i += end + 1
		switch name {
		case "script", "style", "head", "title":
			if !closing {
				i += skipElement(s[i:], name)
			}
		case "br", "p", "div", "tr", "li", "ul", "ol", "table", "blockquote", "pre", "hr",
			"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer":
			b.WriteByte('\n')
		case "td", "th":
			b.WriteByte(' ')
		}
	}
	return tidyLines(b.String())
}

// tagName returns the lower-case element name of the tag at the start of s.
func tagName(s string) (name string, closing, ok bool) {
	i := 1
	if i < len(s) && s[i] == '/' {
		closing = true
		i++
	}
	if i < len(s) && s[i] == '!' {
		return "!", closing, true // doctype or CDATA: skipped like any tag
	}
	start := i
	for i < len(s) && isTagNameByte(s[i]) {
		i++
	}
	if i == start {
		return "", false, false
	}
	return strings.ToLower(s[start:i]), closing, true
}

func isTagNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// skipElement returns the length of s up to and including the closing tag of name (or all of s).
func skipElement(s, name string) int {
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return len(s)
		}
		i += j
		if n, closing, ok := tagName(s[i:]); ok && closing && n == name {
			if end := strings.IndexByte(s[i:], '>'); end >= 0 {
				return i + end + 1
			}
			return len(s)
		}
		i += 2
	}
	return len(s)
}

// writeHTMLText writes a text run with its entities decoded and its white space collapsed.
func writeHTMLText(b *strings.Builder, text string) {
	if strings.IndexByte(text, '&') >= 0 {
		text = html.UnescapeString(text)
	}
	space := false
	for _, r := range text {
		switch r {
		case ' ', '\t', '\n', '\r', '\f', '\u00a0':
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	if space {
		b.WriteByte(' ')
	}
}

// tidyLines trims every line and keeps at most one empty line in a row.
func tidyLines(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	blank := 0
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "  ") {
			// Text runs are collapsed one by one; runs joined across tags may still double up.
			line = strings.Join(strings.Fields(line), " ")
		}
		if line == "" {
			blank++
			continue
		}
		if b.Len() > 0 {
			if blank > 0 {
				b.WriteString("\n\n")
			} else {
				b.WriteByte('\n')
			}
		}
		blank = 0
		b.WriteString(line)
	}
	return b.String()
}
