package main

import (
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// syncBody is what the workers run for each task: the sync engine.
func (g *Globals) syncBody(s *store.Store, box *secret.Box, reg *metrics.Registry) (worker.Body, error) {
	return syncer.New(s, box, syncer.Options{Logger: g.logger}).Run, nil
}
