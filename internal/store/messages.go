package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// MessageQuery selects a page of an account's messages, newest first.
type MessageQuery struct {
	AccountID int64
	FolderID  int64  // 0: every folder of the account
	Search    string // a case-insensitive substring of the subject, the sender or the text
	After     MessageCursor
	Limit     int
}

// MessageCursor is the position after the last message of a page: keyset pagination, so a page
// stays correct while a sync inserts messages, and costs the same at page 1 and page 400. The
// zero cursor is the start.
type MessageCursor struct {
	Date int64 // the message's Date in milliseconds, 0 when it has none
	ID   int64
}

// IsZero reports whether c is the start.
func (c MessageCursor) IsZero() bool { return c == MessageCursor{} }

// Messages returns a page of messages without their raw bytes and text (a listing never needs
// them), and the cursor of the next page, zero when this page is the last.
func (s *Store) Messages(ctx context.Context, q MessageQuery) ([]Message, MessageCursor, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	var (
		where = []string{`account_id = $1`}
		args  = []any{q.AccountID}
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.FolderID != 0 {
		where = append(where, `folder_id = `+arg(q.FolderID))
	}
	if q.Search != "" {
		p := arg("%" + likeEscaper.Replace(strings.ToLower(q.Search)) + "%")
		where = append(where, `(lower(subject) LIKE `+p+` ESCAPE '\' OR lower(from_addr) LIKE `+p+` ESCAPE '\' OR lower(body_text) LIKE `+p+` ESCAPE '\')`)
	}
	if !q.After.IsZero() {
		d, id := arg(q.After.Date), arg(q.After.ID)
		where = append(where, `(COALESCE(date, 0) < `+d+` OR (COALESCE(date, 0) = `+d+` AND id < `+id+`))`)
	}
	query := `SELECT id, account_id, folder_id, uid, message_id, subject, from_addr, to_addrs, date, internal_date,
			flags, size, snippet, parse_error
		FROM messages WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY COALESCE(date, 0) DESC, id DESC LIMIT ` + arg(limit+1)
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, MessageCursor{}, fmt.Errorf("store: messages of account %d: %w", q.AccountID, err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var (
			m                  Message
			uid                int64
			to, flags          string
			date, internalDate sql.NullInt64
		)
		if err := rows.Scan(&m.ID, &m.AccountID, &m.FolderID, &uid, &m.MessageID, &m.Subject, &m.From, &to,
			&date, &internalDate, &flags, &m.Size, &m.Snippet, &m.ParseError); err != nil {
			return nil, MessageCursor{}, fmt.Errorf("store: messages of account %d: %w", q.AccountID, err)
		}
		m.UID = uint32(uid)
		if to != "" {
			m.To = strings.Split(to, "\n")
		}
		m.Flags = strings.Fields(flags)
		m.Date, m.InternalDate = fromNullMillis(date), fromNullMillis(internalDate)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, MessageCursor{}, fmt.Errorf("store: messages of account %d: %w", q.AccountID, err)
	}
	var next MessageCursor
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = MessageCursor{Date: last.Date.UnixMilli(), ID: last.ID}
		if last.Date.IsZero() {
			next.Date = 0
		}
	}
	return out, next, nil
}

// likeEscaper makes user text match itself literally inside a LIKE pattern with ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
