package main

import (
	"context"
	"errors"

	"mailsync/internal/imapconn"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// syncBody is what the workers run for each task: the sync engine, counted in the metrics when
// it returns (per task, so the engine itself stays free of them).
func (g *Globals) syncBody(s *store.Store, box *secret.Box, reg *metrics.Registry) (worker.Body, error) {
	engine := syncer.New(s, box, syncer.Options{Logger: g.logger})
	return func(ctx context.Context, run *worker.Run) error {
		err := engine.Run(ctx, run)
		p := run.Progress()
		reg.MessagesFetched(p.MessagesDone, p.BytesDone)
		var ierr *imapconn.Error
		if errors.As(err, &ierr) {
			reg.IMAPError(string(imapconn.Classify(err)))
		}
		return err
	}, nil
}
