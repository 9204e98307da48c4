package compose

import (
	"bytes"
	"net/mail"
	"strings"
)

// maxReferences bounds the References a reply carries on: the parent and the newest of its
// thread (RFC 5322 §3.6.4 lets a reply trim the middle; the thread's root stays findable through
// the parent).
const maxReferences = 50

// ReplyHeaders are the In-Reply-To and References of a reply to the stored message whose
// Message-ID is messageID (without angle brackets, as mailparse stores it) and whose bytes are
// raw: In-Reply-To is the parent, References the parent's References then the parent. Both are
// empty for a parent without a Message-ID. Only well-formed ids are carried on.
func ReplyHeaders(messageID string, raw []byte) (inReplyTo string, references []string) {
	if messageID == "" || strings.ContainsAny(messageID, "<>\r\n \t") {
		return "", nil
	}
	parent := "<" + messageID + ">"
	if msg, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		for _, f := range strings.Fields(msg.Header.Get("References")) {
			if strings.HasPrefix(f, "<") && strings.HasSuffix(f, ">") && f != parent {
				references = append(references, f)
			}
		}
	}
	if len(references) >= maxReferences {
		references = references[len(references)-maxReferences+1:]
	}
	return parent, append(references, parent)
}
