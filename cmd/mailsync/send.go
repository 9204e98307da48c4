package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"

	"mailsync/internal/action"
	"mailsync/internal/compose"
	"mailsync/internal/store"
)

// maxSend bounds what send reads (the text on stdin, the HTML, the attachments together), as the
// API bounds a send's request.
const maxSend = 32 << 20

// SendCmd sends a message through the account's SMTP server, the text read from stdin; a copy goes
// to the account's Sent folder. It is the API's send action: composed and checked the same way
// (a header field that could inject another is refused, in words), submitted by the account's
// task, never twice: a send interrupted after the message was handed over ends unknown, and is
// not sent again by itself.
type SendCmd struct {
	Account string   `arg:"" help:"Account id or name."`
	To      []string `name:"to" required:"" sep:"none" placeholder:"ADDRESS" help:"A recipient (repeatable)."`
	Cc      []string `name:"cc" sep:"none" placeholder:"ADDRESS" help:"A copy recipient (repeatable)."`
	Bcc     []string `name:"bcc" sep:"none" placeholder:"ADDRESS" help:"A blind copy recipient: submitted to, never written in the message (repeatable)."`
	Subject string   `name:"subject" required:"" help:"The subject."`
	From    string   `name:"from" placeholder:"ADDRESS" help:"The sender (default: the account's login, when it is an address)."`
	HTML    string   `name:"html" type:"existingfile" placeholder:"FILE" help:"An HTML version of the text, from this file."`
	Attach  []string `name:"attach" sep:"none" type:"existingfile" placeholder:"FILE" help:"A file to attach (repeatable); its type comes from its extension."`
	ReplyTo int64    `name:"reply-to" placeholder:"MESSAGE_ID" help:"The stored message this answers (its mailsync id): In-Reply-To and References come from it."`
	Key     string   `name:"idempotency-key" placeholder:"KEY" help:"The same key (per user) is the same send: a script that runs the command again with it never sends twice."`
	JSON    bool     `name:"json" help:"Print the final action as JSON."`
}

func (c *SendCmd) Run(ctx context.Context, g *Globals, stdin io.Reader) error {
	if f, ok := stdin.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		fmt.Fprintln(g.stderr, "reading the message text from stdin (end it with Ctrl-D)")
	}
	budget := int64(maxSend)
	text, err := readAtMost(stdin, &budget, "the text on stdin")
	if err != nil {
		return err
	}
	d := compose.Draft{From: c.From, To: c.To, Cc: c.Cc, Bcc: c.Bcc, Subject: c.Subject, Text: string(text)}
	if c.HTML != "" {
		b, err := readFileAtMost(c.HTML, &budget)
		if err != nil {
			return err
		}
		d.HTML = string(b)
	}
	for _, path := range c.Attach {
		b, err := readFileAtMost(path, &budget)
		if err != nil {
			return err
		}
		d.Attachments = append(d.Attachments, compose.Attachment{Filename: filepath.Base(path),
			ContentType: mime.TypeByExtension(filepath.Ext(path)), Content: b})
	}
	return g.runAction(ctx, c.Account, c.JSON, func(ctx context.Context, s *store.Store, a store.Account) (action.New, error) {
		if _, err := s.AccountSMTP(ctx, a.ID); errors.Is(err, store.ErrNotFound) {
			return action.New{}, fmt.Errorf("account %q has no SMTP server to send with: set one with PUT /api/accounts/%d/smtp", a.Name, a.ID)
		} else if err != nil {
			return action.New{}, err
		}
		if d.From == "" {
			if !strings.Contains(a.Login, "@") {
				return action.New{}, fmt.Errorf("give --from: the account's login %q is not an address", a.Login)
			}
			d.From = a.Login
		}
		if c.ReplyTo != 0 {
			orig, err := s.Message(ctx, c.ReplyTo)
			if err != nil || orig.AccountID != a.ID {
				return action.New{}, fmt.Errorf("--reply-to %d: account %q holds no such message", c.ReplyTo, a.Name)
			}
			d.InReplyTo, d.References = compose.ReplyHeaders(orig.MessageID, orig.Raw)
		}
		m, err := compose.Compose(d, compose.Options{})
		if err != nil {
			return action.New{}, err // an *compose.InvalidError names the field and why
		}
		// What identifies the request under its key: the draft as given (the composed bytes
		// differ at every run, by their Message-ID and Date).
		fingerprint, err := json.Marshal(d)
		if err != nil {
			return action.New{}, err
		}
		return action.Composed(action.Send, a.ID, a.UserID, c.Key, m, d.Subject, 0, fingerprint), nil
	})
}

// readAtMost reads r whole, refusing more than what is left of budget.
func readAtMost(r io.Reader, budget *int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, *budget+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > *budget {
		return nil, fmt.Errorf("%s: the message would be over %d MiB", what, maxSend>>20)
	}
	*budget -= int64(len(b))
	return b, nil
}

func readFileAtMost(path string, budget *int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, budget, path)
}
