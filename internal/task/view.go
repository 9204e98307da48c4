package task

import (
	"fmt"
	"time"
)

// View is a task as the API and the CLI show it (DESIGN §5): one shape for every client, with
// live and percent derived from the row rather than stored.
type View struct {
	ID          string     `json:"id"`
	AccountID   int64      `json:"account_id"`
	State       State      `json:"state"`
	Phase       string     `json:"phase"`
	Percent     float64    `json:"percent"`
	Live        bool       `json:"live"`
	ForceFull   bool       `json:"force_full"`
	CreatedAt   *time.Time `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	HeartbeatAt *time.Time `json:"heartbeat_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	Error       string     `json:"error"`
	// CancelRequested is set once a cancel was asked for a running task that has not stopped yet.
	CancelRequested bool `json:"cancel_requested"`
	// StalledSince is set while a running task waits on its IMAP server, which has sent nothing
	// since then (the worker is alive: live stays true). Its phase then begins "waiting for the
	// server since".
	StalledSince *time.Time   `json:"stalled_since" doc:"While running: since when the IMAP server has sent nothing; null while it answers."`
	Progress     ProgressView `json:"progress"`
}

// ProgressView is the progress part of View.
type ProgressView struct {
	FoldersTotal  int   `json:"folders_total"`
	FoldersDone   int   `json:"folders_done"`
	MessagesTotal int   `json:"messages_total"`
	MessagesDone  int   `json:"messages_done"`
	BytesDone     int64 `json:"bytes_done"`
	New           int   `json:"new"`
	Updated       int   `json:"updated"`
	Deleted       int   `json:"deleted"`
}

// View returns the public shape of t.
func (m *Manager) View(t Task) View {
	p := t.Progress
	return View{
		ID: t.ID, AccountID: t.AccountID, State: t.State, Phase: Phase(t), Percent: Percent(t),
		Live: m.Live(t), ForceFull: t.ForceFull,
		CreatedAt: timePtr(t.CreatedAt), StartedAt: timePtr(t.StartedAt), HeartbeatAt: timePtr(t.HeartbeatAt),
		FinishedAt: timePtr(t.FinishedAt), Error: t.Error, CancelRequested: !t.CancelRequestedAt.IsZero() && t.State.Active(),
		StalledSince: timePtr(stalledSince(t)),
		Progress: ProgressView{
			FoldersTotal: p.FoldersTotal, FoldersDone: p.FoldersDone, MessagesTotal: p.MessagesTotal,
			MessagesDone: p.MessagesDone, BytesDone: p.BytesDone, New: p.New, Updated: p.Updated, Deleted: p.Deleted,
		},
	}
}

// Stalled reports whether t is running and waiting on its IMAP server.
func Stalled(t Task) bool { return !stalledSince(t).IsZero() }

func stalledSince(t Task) time.Time {
	if t.State != Running {
		return time.Time{}
	}
	return t.StalledSince
}

// Phase is the task's phase as every client shows it: while the task waits on its server, that
// comes first ("waiting for the server since 10:04:05 UTC (fetching INBOX)").
func Phase(t Task) string {
	since := stalledSince(t)
	if since.IsZero() {
		return t.Progress.Phase
	}
	return fmt.Sprintf("waiting for the server since %s (%s)", since.UTC().Format("15:04:05 MST"), t.Progress.Phase)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
