package main

import (
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// syncBody is what the workers run for each task: the sync engine.
func (g *Globals) syncBody(s *store.Store) (worker.Body, error) {
	box, err := g.secretBox()
	if err != nil {
		return nil, err
	}
	return syncer.New(s, box, syncer.Options{Logger: g.logger}).Run, nil
}
