package httpapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/action"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// Actions on mail (docs/actions.md). Every create stores the action, answers 202 with it and
// starts the account's task through the same idempotent Start as Sync now: the task pushes the
// account's actions to the server before it pulls.

// ActionJSON is an action as the API shows it.
type ActionJSON struct {
	ID            int64         `json:"id"`
	AccountID     int64         `json:"account_id"`
	Kind          string        `json:"kind" enum:"flags,move,delete,draft,send"`
	State         string        `json:"state" enum:"pending,running,submitting,sent,done,failed,conflict,unknown,cancelled"`
	Messages      []int64       `json:"messages" doc:"The messages it acts on (empty for a send or a draft)."`
	Add           []string      `json:"add,omitempty"`
	Remove        []string      `json:"remove,omitempty"`
	Folder        string        `json:"folder,omitempty" doc:"A move's destination."`
	Permanent     bool          `json:"permanent,omitempty" doc:"A delete that expunges instead of moving to Trash."`
	Replaces      int64         `json:"replaces,omitempty" doc:"The draft a draft replaces."`
	MessageID     string        `json:"message_id,omitempty" doc:"The Message-ID of a sent or saved message."`
	Recipients    []string      `json:"recipients,omitempty" doc:"Every address a send is submitted to (Bcc included)."`
	Subject       string        `json:"subject,omitempty"`
	Error         string        `json:"error" doc:"Why it failed, in words; empty when it did not."`
	Result        action.Result `json:"result"`
	Attempts      int           `json:"attempts"`
	TaskID        string        `json:"task_id,omitempty" doc:"The task that last took it."`
	NextAttemptAt *time.Time    `json:"next_attempt_at,omitempty" doc:"When a send held back by a temporary failure is tried again."`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`
	FinishedAt    *time.Time    `json:"finished_at" nullable:"true"`
}

func actionJSON(a action.Action) ActionJSON {
	j := ActionJSON{ID: a.ID, AccountID: a.AccountID, Kind: string(a.Kind), State: string(a.State),
		Messages: a.Request.Messages, Add: a.Request.Add, Remove: a.Request.Remove, Folder: a.Request.Folder,
		Permanent: a.Request.Permanent, Replaces: a.Request.Replaces, MessageID: a.Request.MessageID,
		Recipients: a.Request.Recipients, Subject: a.Request.Subject, Error: a.Error, Result: a.Result,
		Attempts: a.Attempts, TaskID: a.TaskID, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		FinishedAt: nullTime(a.FinishedAt)}
	if j.Messages == nil {
		j.Messages = []int64{}
	}
	if a.State == action.Pending && !a.NextAttemptAt.IsZero() {
		j.NextAttemptAt = &a.NextAttemptAt
	}
	return j
}

// PendingJSON names an open action on a message.
type PendingJSON struct {
	ActionID int64  `json:"action_id"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
}

type actionOutput struct {
	Status int
	Body   ActionJSON
}

type flagsBody struct {
	Add    []string `json:"add,omitempty" maxItems:"50" doc:"Flags to set, e.g. \\Seen, \\Flagged or a keyword."`
	Remove []string `json:"remove,omitempty" maxItems:"50" doc:"Flags to clear."`
}

type messageFlagsInput struct {
	ID   int64  `path:"id" minimum:"1"`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
	Body flagsBody
}

type moveBody struct {
	Folder string `json:"folder" minLength:"1" maxLength:"1000" doc:"The destination folder, by its name on the server."`
}

type messageMoveInput struct {
	ID   int64  `path:"id" minimum:"1"`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
	Body moveBody
}

type messageDeleteInput struct {
	ID        int64  `path:"id" minimum:"1"`
	Permanent bool   `query:"permanent" doc:"Expunge for good instead of moving to Trash."`
	Key       string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
}

// maxBulk bounds the messages of one bulk action.
const maxBulk = 10000

type bulkFlagsInput struct {
	ID   int64  `path:"id" minimum:"1" doc:"The account's id."`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
	Body struct {
		Messages []int64  `json:"messages" minItems:"1" maxItems:"10000"`
		Add      []string `json:"add,omitempty" maxItems:"50" doc:"Flags to set."`
		Remove   []string `json:"remove,omitempty" maxItems:"50" doc:"Flags to clear."`
	}
}

type bulkMoveInput struct {
	ID   int64  `path:"id" minimum:"1" doc:"The account's id."`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
	Body struct {
		Messages []int64 `json:"messages" minItems:"1" maxItems:"10000"`
		Folder   string  `json:"folder" minLength:"1" maxLength:"1000" doc:"The destination folder, by its name on the server."`
	}
}

type bulkDeleteInput struct {
	ID   int64  `path:"id" minimum:"1" doc:"The account's id."`
	Key  string `header:"Idempotency-Key" maxLength:"200" doc:"The same key (per user) is the same action: a retried request gets the action the first one made, never a second one."`
	Body struct {
		Messages  []int64 `json:"messages" minItems:"1" maxItems:"10000"`
		Permanent bool    `json:"permanent,omitempty"`
	}
}

func (s *Server) messageFlags(ctx context.Context, in *messageFlagsInput) (*actionOutput, error) {
	m, err := s.ownMessage(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return s.flagsAction(ctx, m.AccountID, []int64{m.ID}, in.Body, in.Key)
}

func (s *Server) bulkFlags(ctx context.Context, in *bulkFlagsInput) (*actionOutput, error) {
	if err := s.ownMessages(ctx, in.ID, in.Body.Messages); err != nil {
		return nil, err
	}
	return s.flagsAction(ctx, in.ID, in.Body.Messages, flagsBody{Add: in.Body.Add, Remove: in.Body.Remove}, in.Key)
}

func (s *Server) flagsAction(ctx context.Context, accountID int64, ids []int64, b flagsBody, key string) (*actionOutput, error) {
	if len(b.Add)+len(b.Remove) == 0 {
		return nil, huma.Error422UnprocessableEntity("give at least one flag to add or remove")
	}
	for _, f := range append(slices.Clone(b.Add), b.Remove...) {
		if err := action.CheckFlag(f); err != nil {
			return nil, huma.Error422UnprocessableEntity(err.Error())
		}
	}
	for _, f := range b.Add {
		if action.HasFlag(b.Remove, f) {
			return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("the flag %s is both added and removed", f))
		}
	}
	return s.createAction(ctx, action.New{AccountID: accountID, Kind: action.Flags, Key: key,
		Request: action.Request{Messages: ids, Add: b.Add, Remove: b.Remove}})
}

func (s *Server) messageMove(ctx context.Context, in *messageMoveInput) (*actionOutput, error) {
	m, err := s.ownMessage(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return s.moveAction(ctx, m.AccountID, []int64{m.ID}, in.Body.Folder, in.Key)
}

func (s *Server) bulkMove(ctx context.Context, in *bulkMoveInput) (*actionOutput, error) {
	if err := s.ownMessages(ctx, in.ID, in.Body.Messages); err != nil {
		return nil, err
	}
	return s.moveAction(ctx, in.ID, in.Body.Messages, in.Body.Folder, in.Key)
}

func (s *Server) moveAction(ctx context.Context, accountID int64, ids []int64, folder, key string) (*actionOutput, error) {
	if err := action.CheckFolder(folder); err != nil {
		return nil, huma.Error422UnprocessableEntity(err.Error())
	}
	// A folder the store knows is certain; one it does not know yet (a folder made on the server
	// since the last sync) is the server's to refuse, and the action then fails saying so.
	folders, err := s.store.Folders(ctx, accountID)
	if err != nil {
		return nil, err
	}
	if len(folders) > 0 && !slices.ContainsFunc(folders, func(f store.Folder) bool { return f.Name == folder }) {
		return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("the account has no folder %q (as of its last sync)", folder))
	}
	return s.createAction(ctx, action.New{AccountID: accountID, Kind: action.Move, Key: key,
		Request: action.Request{Messages: ids, Folder: folder}})
}

func (s *Server) messageDelete(ctx context.Context, in *messageDeleteInput) (*actionOutput, error) {
	m, err := s.ownMessage(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return s.createAction(ctx, action.New{AccountID: m.AccountID, Kind: action.Delete, Key: in.Key,
		Request: action.Request{Messages: []int64{m.ID}, Permanent: in.Permanent}})
}

func (s *Server) bulkDelete(ctx context.Context, in *bulkDeleteInput) (*actionOutput, error) {
	if err := s.ownMessages(ctx, in.ID, in.Body.Messages); err != nil {
		return nil, err
	}
	return s.createAction(ctx, action.New{AccountID: in.ID, Kind: action.Delete, Key: in.Key,
		Request: action.Request{Messages: in.Body.Messages, Permanent: in.Body.Permanent}})
}

// ownMessages checks that the account is the user's and holds every message of ids.
func (s *Server) ownMessages(ctx context.Context, accountID int64, ids []int64) error {
	if _, err := s.ownAccount(ctx, accountID); err != nil {
		return err
	}
	if len(ids) > maxBulk {
		return huma.Error422UnprocessableEntity(fmt.Sprintf("at most %d messages at once", maxBulk))
	}
	refs, err := s.store.MessageRefs(ctx, accountID, ids)
	if err != nil {
		return err
	}
	var missing []string
	for _, id := range ids {
		if _, ok := refs[id]; !ok {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		if len(missing) > 10 {
			missing = append(missing[:10], fmt.Sprintf("and %d more", len(missing)-10))
		}
		return huma.Error422UnprocessableEntity(fmt.Sprintf("account %d holds no message %s", accountID, strings.Join(missing, ", ")))
	}
	return nil
}

// createAction stores n for the signed-in user and starts the account's task. The same
// Idempotency-Key answers the action it made the first time, whatever its state now.
func (s *Server) createAction(ctx context.Context, n action.New) (*actionOutput, error) {
	acct, err := s.ownAccount(ctx, n.AccountID)
	if err != nil {
		return nil, err
	}
	if acct.ReauthRequired() {
		return nil, reauthProblem(acct)
	}
	n.UserID = acct.UserID
	a, created, err := s.store.CreateAction(ctx, n)
	if errors.Is(err, action.ErrKeyReused) {
		return nil, huma.Error422UnprocessableEntity("this Idempotency-Key was already used for another request; use a new key for a new request")
	}
	if err != nil {
		return nil, err
	}
	if created {
		s.cfg.Metrics.ActionCreated(string(a.Kind))
	}
	if a.State.Open() {
		// Busy: the task row is locked by another session, which is starting or ending a task
		// of this account; the instance's due-action check starts one within seconds.
		if _, _, err := s.tasks.Start(ctx, a.AccountID, false); err != nil && !errors.Is(err, task.ErrBusy) {
			return nil, err
		}
	}
	return &actionOutput{Status: 202, Body: actionJSON(a)}, nil
}

type actionIDInput struct {
	ID int64 `path:"id" minimum:"1" doc:"The action's id."`
}

// ownAction returns the signed-in user's action; another user's answers 404 like a missing one.
func (s *Server) ownAction(ctx context.Context, id int64) (action.Action, error) {
	a, err := s.store.Action(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.UserID != userFrom(ctx).ID) {
		return action.Action{}, huma.Error404NotFound(fmt.Sprintf("action %d not found", id))
	}
	return a, err
}

func (s *Server) getAction(ctx context.Context, in *actionIDInput) (*actionOutput, error) {
	a, err := s.ownAction(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &actionOutput{Status: 200, Body: actionJSON(a)}, nil
}

// retryAction puts a failed, conflicting or unknown action back in the queue: for an unknown send
// it is the owner's decision that it did not go out.
func (s *Server) retryAction(ctx context.Context, in *actionIDInput) (*actionOutput, error) {
	if _, err := s.ownAction(ctx, in.ID); err != nil {
		return nil, err
	}
	a, err := s.store.RetryAction(ctx, in.ID)
	if errors.Is(err, action.ErrNotOpen) {
		return nil, huma.Error409Conflict("only a failed, conflicting or unknown action can be retried")
	}
	if err != nil {
		return nil, err
	}
	if _, _, err := s.tasks.Start(ctx, a.AccountID, false); err != nil && !errors.Is(err, task.ErrBusy) {
		return nil, err
	}
	return &actionOutput{Status: 202, Body: actionJSON(a)}, nil
}

func (s *Server) cancelAction(ctx context.Context, in *actionIDInput) (*actionOutput, error) {
	if _, err := s.ownAction(ctx, in.ID); err != nil {
		return nil, err
	}
	a, err := s.store.CancelAction(ctx, in.ID)
	if errors.Is(err, action.ErrNotOpen) {
		return nil, huma.Error409Conflict("only a pending action can be cancelled; this one is under way or over")
	}
	if err != nil {
		return nil, err
	}
	return &actionOutput{Status: 200, Body: actionJSON(a)}, nil
}

type accountActionsInput struct {
	ID    int64 `path:"id" minimum:"1" doc:"The account's id."`
	Open  bool  `query:"open" doc:"Only the actions not yet over."`
	Limit int   `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

type actionsOutput struct {
	Body struct {
		Actions []ActionJSON `json:"actions"`
	}
}

func (s *Server) accountActions(ctx context.Context, in *accountActionsInput) (*actionsOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	list, err := s.store.AccountActions(ctx, in.ID, in.Open, in.Limit)
	if err != nil {
		return nil, err
	}
	out := &actionsOutput{}
	out.Body.Actions = make([]ActionJSON, 0, len(list))
	for _, a := range list {
		out.Body.Actions = append(out.Body.Actions, actionJSON(a))
	}
	return out, nil
}

// overlay is the pending overlay of one account's reads: messages shown as their open actions
// will leave them.
type overlay struct {
	effects map[int64]*action.Effect
	folders map[string]int64 // folder ids by name, read when a move needs them
}

func (s *Server) overlayOf(ctx context.Context, accountID int64) (*overlay, error) {
	open, err := s.store.OpenActions(ctx, accountID)
	if err != nil || len(open) == 0 {
		return &overlay{}, err
	}
	o := &overlay{effects: action.Overlay(open)}
	for _, e := range o.effects {
		if e.Folder != "" {
			folders, err := s.store.Folders(ctx, accountID)
			if err != nil {
				return nil, err
			}
			o.folders = make(map[string]int64, len(folders))
			for _, f := range folders {
				o.folders[f.Name] = f.ID
			}
			break
		}
	}
	return o, nil
}

// apply shows m as its open actions will leave it. hidden: it will have left the folder listed
// (listed 0: every folder), moved away or deleted.
func (o *overlay) apply(m *MessageJSON, listed int64) (hidden bool) {
	e := o.effects[m.ID]
	if e == nil {
		return false
	}
	for _, r := range e.Actions {
		m.Pending = append(m.Pending, PendingJSON{ActionID: r.ID, Kind: string(r.Kind), State: string(r.State)})
	}
	m.Flags = nonNil(e.Flags(m.Flags))
	if e.Folder != "" {
		if id, ok := o.folders[e.Folder]; ok {
			m.FolderID = id
		}
	}
	if e.Deleted {
		return true
	}
	return listed != 0 && m.FolderID != listed
}
