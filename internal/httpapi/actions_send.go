package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/action"
	"mailsync/internal/compose"
	"mailsync/internal/store"
)

// maxComposed bounds the request of a send or a draft, attachments (base64) included.
const maxComposed = 32 << 20

type attachmentBody struct {
	Filename    string `json:"filename" minLength:"1" maxLength:"255"`
	ContentType string `json:"content_type,omitempty" maxLength:"255" doc:"Default application/octet-stream."`
	Content     []byte `json:"content" doc:"The file, base64."`
}

// composeBody is a message to compose, as JSON. Header fields are checked, never copied: a CR or
// LF in any of them is refused (422), so no request can add a header field or a recipient.
type composeBody struct {
	From        string           `json:"from,omitempty" maxLength:"998" doc:"Default: the account's login, when it is an address."`
	To          []string         `json:"to,omitempty" maxItems:"500"`
	Cc          []string         `json:"cc,omitempty" maxItems:"500"`
	Bcc         []string         `json:"bcc,omitempty" maxItems:"500" doc:"Submitted to, never written in the message."`
	Subject     string           `json:"subject,omitempty" maxLength:"998"`
	Text        string           `json:"text,omitempty"`
	HTML        string           `json:"html,omitempty"`
	Attachments []attachmentBody `json:"attachments,omitempty" maxItems:"100"`
	ReplyTo     int64            `json:"reply_to,omitempty" doc:"The id of the stored message this answers: In-Reply-To and References come from it."`
	InReplyTo   string           `json:"in_reply_to,omitempty" maxLength:"998"`
	References  []string         `json:"references,omitempty" maxItems:"100"`
	Replaces    int64            `json:"replaces,omitempty" doc:"Drafts only: the stored draft this one replaces, removed once the new one is saved."`
}

type sendInput struct {
	ID   int64  `path:"id" minimum:"1" doc:"The account's id."`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same send: a retried request never sends twice."`
	Body composeBody
}

type draftInput struct {
	ID   int64  `path:"id" minimum:"1" doc:"The account's id."`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same draft."`
	Body composeBody
}

func (s *Server) send(ctx context.Context, in *sendInput) (*actionOutput, error) {
	acct, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if in.Body.Replaces != 0 {
		return nil, huma.Error422UnprocessableEntity("replaces is for drafts: a send replaces nothing")
	}
	if _, err := s.store.AccountSMTP(ctx, acct.ID); errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error409Conflict(fmt.Sprintf("account %q has no SMTP server to send with: set one with PUT /api/accounts/%d/smtp", acct.Name, acct.ID))
	} else if err != nil {
		return nil, err
	}
	n, err := s.composed(ctx, action.Send, acct, in.Key, in.Body, 0)
	if err != nil {
		return nil, err
	}
	return s.createAction(ctx, n)
}

func (s *Server) saveDraft(ctx context.Context, in *draftInput) (*actionOutput, error) {
	acct, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if in.Body.Replaces != 0 {
		if err := s.ownMessages(ctx, acct.ID, []int64{in.Body.Replaces}); err != nil {
			return nil, err
		}
	}
	n, err := s.composed(ctx, action.Draft, acct, in.Key, in.Body, in.Body.Replaces)
	if err != nil {
		return nil, err
	}
	return s.createAction(ctx, n)
}

// composed composes b into the action that sends or saves it.
func (s *Server) composed(ctx context.Context, kind action.Kind, acct store.Account, key string, b composeBody, replaces int64) (action.New, error) {
	fingerprint, err := json.Marshal(struct {
		B        composeBody
		Replaces int64
	}{b, replaces})
	if err != nil {
		return action.New{}, err
	}
	d := compose.Draft{From: b.From, To: b.To, Cc: b.Cc, Bcc: b.Bcc, Subject: b.Subject, Text: b.Text, HTML: b.HTML,
		InReplyTo: b.InReplyTo, References: b.References}
	if d.From == "" {
		if !strings.Contains(acct.Login, "@") {
			return action.New{}, huma.Error422UnprocessableEntity(fmt.Sprintf("give from: the account's login %q is not an address", acct.Login))
		}
		d.From = acct.Login
	}
	for _, a := range b.Attachments {
		d.Attachments = append(d.Attachments, compose.Attachment{Filename: a.Filename, ContentType: a.ContentType, Content: a.Content})
	}
	if b.ReplyTo != 0 {
		orig, err := s.ownMessage(ctx, b.ReplyTo)
		if err != nil {
			return action.New{}, err
		}
		if orig.AccountID != acct.ID {
			return action.New{}, huma.Error422UnprocessableEntity(fmt.Sprintf("message %d is not of account %d", b.ReplyTo, acct.ID))
		}
		inReplyTo, refs := compose.ReplyHeaders(orig.MessageID, orig.Raw)
		if d.InReplyTo == "" {
			d.InReplyTo = inReplyTo
		}
		if len(d.References) == 0 {
			d.References = refs
		}
	}
	m, err := compose.Compose(d, compose.Options{Draft: kind == action.Draft})
	var invalid *compose.InvalidError
	if errors.As(err, &invalid) {
		return action.New{}, huma.Error422UnprocessableEntity(invalid.Error(), &huma.ErrorDetail{Location: "body." + invalid.Field, Message: invalid.Reason})
	}
	if err != nil {
		return action.New{}, huma.Error422UnprocessableEntity(err.Error())
	}
	return action.Composed(kind, acct.ID, acct.UserID, key, m, b.Subject, replaces, fingerprint), nil
}

// SMTPJSON is where an account submits mail.
type SMTPJSON struct {
	Host      string `json:"host" minLength:"1" maxLength:"253"`
	Port      int    `json:"port" minimum:"1" maximum:"65535"`
	TLSMode   string `json:"tls_mode" enum:"none,starttls,tls" doc:"starttls (usually port 587) or tls (465); none only on a trusted network."`
	SavesSent bool   `json:"saves_sent,omitempty" doc:"The server files sent mail in Sent itself (Gmail): no copy is appended."`
}

type smtpOutput struct {
	Body SMTPJSON
}

func (s *Server) getSMTP(ctx context.Context, in *accountIDInput) (*smtpOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	c, err := s.store.AccountSMTP(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("account %d has no SMTP server", in.ID))
	}
	if err != nil {
		return nil, err
	}
	return &smtpOutput{Body: SMTPJSON{Host: c.Host, Port: c.Port, TLSMode: c.TLSMode, SavesSent: c.SavesSent}}, nil
}

type putSMTPInput struct {
	ID   int64 `path:"id" minimum:"1" doc:"The account's id."`
	Body SMTPJSON
}

// putSMTP sets the account's SMTP server after a test login with the account's credentials, under
// the same destination policy as its IMAP server.
func (s *Server) putSMTP(ctx context.Context, in *putSMTPInput) (*smtpOutput, error) {
	acct, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	// A non-admin user's choice of server is under the destination policy, at this test and at
	// every send, whoever made the account.
	c := store.SMTP{Host: strings.TrimSpace(in.Body.Host), Port: in.Body.Port, TLSMode: in.Body.TLSMode, SavesSent: in.Body.SavesSent,
		Restricted: !userFrom(ctx).IsAdmin}
	if s.cfg.SMTPCheck != nil {
		if err := s.cfg.SMTPCheck.CheckSMTP(ctx, acct, c); err != nil {
			return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("the SMTP server %s:%d did not accept the account's login: %v", c.Host, c.Port, err))
		}
	}
	if err := s.store.SetAccountSMTP(ctx, acct.ID, c); err != nil {
		return nil, err
	}
	return &smtpOutput{Body: in.Body}, nil
}
