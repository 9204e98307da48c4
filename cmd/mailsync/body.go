package main

import (
	"context"
	"errors"

	"mailsync/internal/store"
	"mailsync/internal/worker"
)

// syncBody is what the workers run for each task.
func (g *Globals) syncBody(s *store.Store) (worker.Body, error) {
	return func(ctx context.Context, run *worker.Run) error {
		return errors.New("this build has no sync engine yet")
	}, nil
}
