package task

import "time"

// View is a task as the API and the CLI show it: one shape for every client, with
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
	CancelRequested bool         `json:"cancel_requested"`
	Progress        ProgressView `json:"progress"`
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
		ID: t.ID, AccountID: t.AccountID, State: t.State, Phase: p.Phase, Percent: Percent(t),
		Live: m.Live(t), ForceFull: t.ForceFull,
		CreatedAt: timePtr(t.CreatedAt), StartedAt: timePtr(t.StartedAt), HeartbeatAt: timePtr(t.HeartbeatAt),
		FinishedAt: timePtr(t.FinishedAt), Error: t.Error, CancelRequested: !t.CancelRequestedAt.IsZero() && t.State.Active(),
		Progress: ProgressView{
			FoldersTotal: p.FoldersTotal, FoldersDone: p.FoldersDone, MessagesTotal: p.MessagesTotal,
			MessagesDone: p.MessagesDone, BytesDone: p.BytesDone, New: p.New, Updated: p.Updated, Deleted: p.Deleted,
		},
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
