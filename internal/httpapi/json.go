package httpapi

import (
	"time"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// TaskJSON is a task as every client sees it (task.View): live and percent are derived from the
// row as of the database clock.
type TaskJSON = task.View

func (s *Server) taskJSON(t task.Task) TaskJSON { return s.tasks.View(t) }

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// AccountJSON is an account as the API shows it: never its password, sealed or not.
type AccountJSON struct {
	ID            int64     `json:"id"`
	Name          string    `json:"name"`
	IMAPHost      string    `json:"imap_host"`
	IMAPPort      int       `json:"imap_port"`
	TLSMode       string    `json:"tls_mode" enum:"none,starttls,tls"`
	TLSSkipVerify bool      `json:"tls_skip_verify"`
	Login         string    `json:"login"`
	SyncIntervalS int64     `json:"sync_interval_s" doc:"Seconds between scheduled syncs; 0: none."`
	CreatedAt     time.Time `json:"created_at"`
	LastError     string    `json:"last_error"`
	LastTask      *TaskJSON `json:"last_task" doc:"The live task, else the most recent one; null before the first sync."`
	AuthKind      string    `json:"auth_kind" enum:"password,oauth2" doc:"How mailsync signs in: the IMAP password, or an OAuth2 token (login is then the mailbox address the token is for)."`
	OAuthProvider string    `json:"oauth_provider,omitempty" doc:"The OAuth2 provider the account's token comes from."`
	AuthState     string    `json:"auth_state" enum:"ok,reauth_required" doc:"reauth_required: the provider refused the account's authorization; nothing syncs until its owner signs in again."`
}

func accountJSON(a store.Account, last *TaskJSON) AccountJSON {
	return AccountJSON{ID: a.ID, Name: a.Name, IMAPHost: a.IMAPHost, IMAPPort: a.IMAPPort, TLSMode: a.TLSMode,
		TLSSkipVerify: a.TLSSkipVerify, Login: a.Login, SyncIntervalS: int64(a.SyncInterval / time.Second),
		CreatedAt: a.CreatedAt, LastError: a.LastError, LastTask: last,
		AuthKind: a.AuthKind, OAuthProvider: a.OAuthProvider, AuthState: a.AuthState}
}

// FolderJSON is a folder and its sync checkpoint.
type FolderJSON struct {
	ID            int64      `json:"id"`
	Name          string     `json:"name"`
	Delimiter     string     `json:"delimiter"`
	Attributes    []string   `json:"attributes"`
	UIDValidity   uint32     `json:"uidvalidity"`
	UIDNext       uint32     `json:"uidnext"`
	HighestModSeq uint64     `json:"highestmodseq"`
	Messages      int        `json:"messages"`
	LastSyncedAt  *time.Time `json:"last_synced_at" nullable:"true"`
}

// MessageJSON is a stored message without its raw bytes (GET .../raw serves those).
type MessageJSON struct {
	ID           int64      `json:"id"`
	AccountID    int64      `json:"account_id"`
	FolderID     int64      `json:"folder_id"`
	UID          uint32     `json:"uid"`
	MessageID    string     `json:"message_id"`
	Subject      string     `json:"subject"`
	From         string     `json:"from"`
	To           []string   `json:"to"`
	Date         *time.Time `json:"date" nullable:"true"`
	InternalDate *time.Time `json:"internal_date" nullable:"true"`
	Flags        []string   `json:"flags"`
	Size         int64      `json:"size"`
	Snippet      string     `json:"snippet"`
	BodyText     string     `json:"body_text,omitempty" doc:"The text of the message; only in GET /api/messages/{id}."`
	ParseError   string     `json:"parse_error,omitempty"`
	// Pending lists the open actions on the message; Flags and FolderID already show what they
	// will leave (the pending overlay).
	Pending []PendingJSON `json:"pending" doc:"The open actions on the message; flags and folder_id show it as they will leave it."`
}

func messageJSON(m store.Message) MessageJSON {
	return MessageJSON{ID: m.ID, AccountID: m.AccountID, FolderID: m.FolderID, UID: m.UID, MessageID: m.MessageID,
		Subject: m.Subject, From: m.From, To: nonNil(m.To), Date: nullTime(m.Date), InternalDate: nullTime(m.InternalDate),
		Flags: nonNil(m.Flags), Size: m.Size, Snippet: m.Snippet, BodyText: m.BodyText, ParseError: m.ParseError,
		Pending: []PendingJSON{}}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
