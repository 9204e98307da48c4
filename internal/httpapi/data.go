package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/store"
)

type foldersOutput struct {
	Body []FolderJSON
}

func (s *Server) listFolders(ctx context.Context, in *accountIDInput) (*foldersOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	folders, err := s.store.Folders(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	out := make([]FolderJSON, 0, len(folders))
	for _, f := range folders {
		out = append(out, FolderJSON{ID: f.ID, Name: f.Name, Delimiter: f.Delimiter, Attributes: nonNil(f.Attributes),
			UIDValidity: f.UIDValidity, UIDNext: f.UIDNext, HighestModSeq: f.HighestModSeq, Messages: f.Messages,
			LastSyncedAt: nullTime(f.LastSyncedAt)})
	}
	return &foldersOutput{Body: out}, nil
}

type messagesInput struct {
	ID     int64  `path:"id" minimum:"1"`
	Folder int64  `query:"folder" minimum:"0" doc:"Only this folder (its id); 0 or absent: every folder."`
	Q      string `query:"q" maxLength:"200" doc:"Case-insensitive text to find in the subject, the sender or the text."`
	Cursor string `query:"cursor" maxLength:"100" doc:"The next_cursor of the previous page; absent for the first page."`
	Limit  int    `query:"limit" minimum:"1" maximum:"200" default:"50"`
}

type messagesOutput struct {
	Body struct {
		Messages   []MessageJSON `json:"messages"`
		NextCursor string        `json:"next_cursor" doc:"Pass as cursor for the next page; empty on the last page."`
	}
}

// encodeCursor makes a page position opaque: clients pass it back, never build one.
func encodeCursor(c store.MessageCursor) string {
	if c.IsZero() {
		return ""
	}
	buf := binary.BigEndian.AppendUint64(nil, uint64(c.Date))
	buf = binary.BigEndian.AppendUint64(buf, uint64(c.ID))
	return base64.RawURLEncoding.EncodeToString(buf)
}

var errBadCursor = errors.New("bad cursor: pass back the next_cursor of a previous page, unchanged")

func decodeCursor(s string) (store.MessageCursor, error) {
	if s == "" {
		return store.MessageCursor{}, nil
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(buf) != 16 {
		return store.MessageCursor{}, errBadCursor
	}
	c := store.MessageCursor{Date: int64(binary.BigEndian.Uint64(buf[:8])), ID: int64(binary.BigEndian.Uint64(buf[8:]))}
	if c.ID <= 0 {
		return store.MessageCursor{}, errBadCursor
	}
	return c, nil
}

func (s *Server) listMessages(ctx context.Context, in *messagesInput) (*messagesOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	after, err := decodeCursor(in.Cursor)
	if err != nil {
		return nil, huma.Error400BadRequest(err.Error(), &huma.ErrorDetail{Location: "query.cursor", Message: err.Error()})
	}
	msgs, next, err := s.store.Messages(ctx, store.MessageQuery{AccountID: in.ID, FolderID: in.Folder, Search: in.Q,
		After: after, Limit: in.Limit})
	if err != nil {
		return nil, err
	}
	// Messages show as their open actions will leave them; one a pending move or delete takes out
	// of the folder listed is left out (the page is then shorter than its limit).
	o, err := s.overlayOf(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	out := &messagesOutput{}
	out.Body.Messages = make([]MessageJSON, 0, len(msgs))
	for _, m := range msgs {
		j := messageJSON(m)
		if o.apply(&j, in.Folder) {
			continue
		}
		out.Body.Messages = append(out.Body.Messages, j)
	}
	out.Body.NextCursor = encodeCursor(next)
	return out, nil
}

// ownMessage returns the signed-in user's message; another user's answers 404 like a missing one.
func (s *Server) ownMessage(ctx context.Context, id int64) (store.Message, error) {
	notFound := huma.Error404NotFound(fmt.Sprintf("message %d not found", id))
	m, err := s.store.Message(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Message{}, notFound
	}
	if err != nil {
		return store.Message{}, err
	}
	if _, err := s.ownAccount(ctx, m.AccountID); err != nil {
		return store.Message{}, notFound
	}
	return m, nil
}

type messageIDInput struct {
	ID int64 `path:"id" minimum:"1"`
}

type messageOutput struct {
	Body MessageJSON
}

func (s *Server) getMessage(ctx context.Context, in *messageIDInput) (*messageOutput, error) {
	m, err := s.ownMessage(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	o, err := s.overlayOf(ctx, m.AccountID)
	if err != nil {
		return nil, err
	}
	j := messageJSON(m)
	o.apply(&j, 0) // one message asked for by id is shown even when an action will delete it
	return &messageOutput{Body: j}, nil
}

// rawMessage serves the exact bytes the IMAP server sent, as message/rfc822.
func (s *Server) rawMessage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeProblem(w, http.StatusUnprocessableEntity, fmt.Sprintf("message id %q is not a positive integer", r.PathValue("id")))
		return
	}
	m, err := s.ownMessage(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Length", strconv.Itoa(len(m.Raw)))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="message-%d.eml"`, m.ID))
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(m.Raw)
}
