package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/store"
	"mailsync/internal/task"
)

// ownTask returns the signed-in user's task; another user's answers 404 like a missing one.
func (s *Server) ownTask(ctx context.Context, id string) (task.Task, error) {
	t, owner, err := s.store.TaskWithOwner(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && owner != userFrom(ctx).ID) {
		return task.Task{}, huma.Error404NotFound(fmt.Sprintf("task %s not found", id))
	}
	if err != nil {
		return task.Task{}, err
	}
	return t, nil
}

type startSyncInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body *struct {
		ForceFull bool `json:"force_full,omitempty" doc:"Rescan every folder and reconcile, instead of an incremental sync."`
	} `required:"false"`
}

type startSyncOutput struct {
	Status int
	Body   struct {
		Task   TaskJSON `json:"task"`
		Reused bool     `json:"reused" doc:"True when the account already had a live task, which is the one returned."`
	}
}

// startSync is "Sync now": idempotent, so any number of clicks, tabs and instances get the one
// live task of the account; a dead one is replaced on the spot.
//
// It answers within about a second even when another database session holds the account's task
// row: with the live task, read without waiting for the lock, or, when that task is dead (or not
// yet committed) and so can be neither joined nor replaced until the lock goes, with a 503 and
// Retry-After. The database ends a frozen mailsync session's locks within seconds.
func (s *Server) startSync(ctx context.Context, in *startSyncInput) (*startSyncOutput, error) {
	acct, err := s.ownAccount(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if acct.ReauthRequired() {
		return nil, reauthProblem(acct)
	}
	force := in.Body != nil && in.Body.ForceFull
	t, created, err := s.tasks.Start(ctx, in.ID, force)
	if errors.Is(err, task.ErrBusy) {
		return nil, busyProblem("the account's last sync is locked by another database session; try again in a few seconds")
	}
	if err != nil {
		return nil, err
	}
	out := &startSyncOutput{Status: 202}
	out.Body.Task, out.Body.Reused = s.taskJSON(t), !created
	return out, nil
}

// reauthProblem is the answer to Sync now on an account waiting for its owner to sign in again:
// no sync is attempted, for none could sign in.
func reauthProblem(a store.Account) error {
	return huma.Error409Conflict(fmt.Sprintf("account %q must sign in again: its provider (%s) no longer accepts its authorization "+
		"(revoked, expired or its password changed). Use \"Sign in again\" on its card, then sync.", a.Name, a.OAuthProvider))
}

// busyProblem is the answer to a task change that met a row another database session holds:
// nothing changed, and the database ends a frozen mailsync session's locks within seconds.
func busyProblem(detail string) error {
	return huma.ErrorWithHeaders(huma.Error503ServiceUnavailable(detail), http.Header{"Retry-After": {retryAfter(busyRetry)}})
}

// busyRetry is the Retry-After of a busyProblem.
const busyRetry = 2 * time.Second

type taskOutput struct {
	Body TaskJSON
}

func (s *Server) accountSync(ctx context.Context, in *accountIDInput) (*taskOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	t, err := s.tasks.Latest(ctx, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("account %d has never been synced", in.ID))
	}
	if err != nil {
		return nil, err
	}
	return &taskOutput{Body: s.taskJSON(t)}, nil
}

type taskIDInput struct {
	ID string `path:"id" format:"uuid" doc:"The task's UUID."`
}

func (s *Server) getTask(ctx context.Context, in *taskIDInput) (*taskOutput, error) {
	t, err := s.ownTask(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &taskOutput{Body: s.taskJSON(t)}, nil
}

// cancelTask cancels a queued task at once and asks a running one to stop at its next heartbeat;
// a finished task is returned as it is. A task whose row another session holds answers 503.
func (s *Server) cancelTask(ctx context.Context, in *taskIDInput) (*taskOutput, error) {
	before, err := s.ownTask(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	t, err := s.tasks.Cancel(ctx, in.ID)
	if errors.Is(err, task.ErrBusy) {
		return nil, busyProblem("the task is locked by another database session; try again in a few seconds")
	}
	if err != nil {
		return nil, err
	}
	if before.State.Active() && !t.State.Active() {
		s.cfg.Metrics.TaskFinished(t)
	}
	return &taskOutput{Body: s.taskJSON(t)}, nil
}
