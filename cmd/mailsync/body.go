package main

import (
	"context"
	"errors"

	"mailsync/internal/action"
	"mailsync/internal/imapconn"
	"mailsync/internal/metrics"
	"mailsync/internal/oauth"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/syncer"
	"mailsync/internal/worker"
)

// syncEngine is the sync engine over s, under the operator's destination policy, limits and
// IMAP timeouts: every sync, login check and IMAP push connection of the process goes through it.
// reg, when not nil, counts the actions its runs end.
func (g *Globals) syncEngine(s *store.Store, box *secret.Box, reg *metrics.Registry) *syncer.Syncer {
	opts := syncer.Options{Logger: g.logger, Limits: g.Limits.limits(),
		DialTimeout: g.IMAP.DialTimeout, CommandTimeout: g.IMAP.CommandTimeout, StallAfter: g.IMAP.StallAfter}
	if g.destinations != nil {
		opts.Destinations = g.destinations
	}
	opts.Tokens = g.tokens
	if reg != nil {
		opts.ActionEnded = func(a action.Action) { reg.ActionEnded(string(a.Kind), string(a.State)) }
	}
	return syncer.New(s, box, opts)
}

// syncBody is what the workers run for each task: the sync engine, counted in the metrics when
// it returns (per task, so the engine itself stays free of them).
func syncBody(engine *syncer.Syncer, reg *metrics.Registry) worker.Body {
	return func(ctx context.Context, run *worker.Run) error {
		err := engine.Run(ctx, run)
		p := run.Progress()
		reg.MessagesFetched(p.New, p.BytesDone)
		var (
			ierr *imapconn.Error
			oerr *oauth.Error
		)
		switch {
		case errors.As(err, &ierr):
			reg.IMAPError(string(imapconn.Classify(err)))
		case errors.As(err, &oerr):
			// A token that could not be had fails the sync like the login it stands for.
			reg.IMAPError(oerr.Class)
		}
		return err
	}
}
