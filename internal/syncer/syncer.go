// Package syncer copies one IMAP account into the store: every selectable folder, every message
// with its exact bytes, and every flag, and keeps that copy current with incremental syncs.
//
// The algorithm, per folder, after one LIST (with LIST-STATUS when the server has it):
//
//   - a folder whose UIDVALIDITY, UIDNEXT, MESSAGES and HIGHESTMODSEQ equal its checkpoint is
//     skipped without a command (only when the server reports HIGHESTMODSEQ: without CONDSTORE a
//     flag change is invisible in STATUS, so such folders always get a flag scan);
//   - a changed UIDVALIDITY drops the folder's rows in the same transaction as its first new
//     batch, and the folder is synced as new;
//   - new mail is fetched from the checkpoint's UIDNEXT on, streamed, parsed on a few goroutines
//     and committed by one writer in batches bounded by count and bytes; each batch carries the
//     checkpoint and a fenced heartbeat, so a crash repeats at most the work in flight (itself
//     bounded by one batch) and never skips any;
//   - flags come from CHANGEDSINCE with CONDSTORE, else from a FLAGS scan diffed with the store;
//   - deletions come from UID SEARCH ALL diffed with the store, asked only when the counts say
//     something is gone (never QRESYNC: go-imap v2 beta.8 cannot take an unsolicited VANISHED);
//   - folders gone from the server are deleted from the store. A rename is a deletion and a new
//     folder, unless the server names folders by RFC 8474 MAILBOXID: a folder that is gone under
//     its stored name and selected under another with the same MAILBOXID and UIDVALIDITY is
//     renamed in the store, and its messages are kept, not downloaded again.
//
// Bad mail is one message's problem: a message that does not parse is stored raw with its
// parse_error. A folder that cannot be selected is skipped and named in the task's final phase.
// A connection that breaks during a fetch is dialled again and the fetch goes on after the last
// batch; a message whose response breaks the connection by itself is skipped and named too, and
// so is one announced above the maximum message size (never downloaded), and a folder whose
// name is not valid modified UTF-7.
// Any other error that breaks the connection ends the run with the error's class in its
// message; the next sync resumes from the checkpoints.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/imapconn"
	"mailsync/internal/netpolicy"
	"mailsync/internal/oauth"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
	"mailsync/internal/worker"
)

// Store is what the syncer needs of the database.
type Store interface {
	Account(ctx context.Context, id int64) (store.Account, error)
	Folders(ctx context.Context, accountID int64) ([]store.Folder, error)
	FolderUIDs(ctx context.Context, folderID int64) ([]store.FlagChange, error)
	FolderSummaries(ctx context.Context, folderID int64) ([]store.StoredSummary, error)
	CommitBatch(ctx context.Context, l task.Lease, p task.Progress, b store.Batch) (int64, error)
	DeleteFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, name string) error
	RenameFolder(ctx context.Context, l task.Lease, p task.Progress, accountID int64, from, to string) error
	StoredUIDsFrom(ctx context.Context, folderID int64, from uint32) ([]uint32, error)

	// The push of actions (push.go).
	OpenActions(ctx context.Context, accountID int64) ([]action.Action, error)
	TakeAction(ctx context.Context, l task.Lease, p task.Progress, id int64) (action.Action, error)
	MarkSubmitting(ctx context.Context, l task.Lease, p task.Progress, id int64) error
	MarkSent(ctx context.Context, l task.Lease, p task.Progress, id int64, answer string) error
	FinishAction(ctx context.Context, l task.Lease, p task.Progress, id int64, o store.Outcome) (action.Action, error)
	ActionMessage(ctx context.Context, id int64) ([]byte, error)
	MessageRefs(ctx context.Context, accountID int64, ids []int64) (map[int64]store.MessageRef, error)
	AccountSMTP(ctx context.Context, accountID int64) (store.SMTP, error)
}

// Options tunes a Syncer. The zero value is usable.
type Options struct {
	// BatchMessages and BatchBytes bound one committed batch and, together, everything fetched
	// but not yet committed: a crash re-fetches at most that much. Defaults 500 and 8 MiB.
	BatchMessages int
	BatchBytes    int64
	// ParseWorkers is how many goroutines parse messages while the next ones arrive. Default
	// GOMAXPROCS.
	ParseWorkers int
	// DialTimeout, CommandTimeout and StallAfter are passed to imapconn (its defaults when zero).
	// A task's connections report their stalls to its run (worker.Run.Waiting), so the task
	// says when it is waiting on its server.
	DialTimeout    time.Duration
	CommandTimeout time.Duration
	StallAfter     time.Duration
	// Limits bound what an account's server can make a sync hold or wait for (imapconn's
	// defaults for zero fields). A message above Limits.MaxMessageSize is skipped and named.
	Limits imapconn.Limits
	// Fetched, when set, is called on the fetching goroutine for every message body received,
	// before it is stored. Tests and benchmarks count re-downloads with it.
	Fetched func(folder string, uid uint32)
	Logger  *slog.Logger
	// Destinations is the operator's destination policy, applied to accounts a non-admin user
	// pointed at their server (store.Account.Restricted) at every connection: the login test,
	// every sync, every redial, every IDLE. Nil: netpolicy's default (no loopback, private or
	// link-local address).
	Destinations imapconn.DestinationPolicy
	// Tokens hands out the access tokens of OAuth2 accounts and refreshes them; nil: such
	// accounts cannot sync (their tasks fail saying so).
	Tokens *oauth.Tokens
	// ActionEnded, when set, is told of every action a run brought to a final state (metrics).
	ActionEnded func(action.Action)
	// Applied, when set, is called after an action was applied on the server and before that is
	// recorded: the crash window the push is built to survive, which tests kill a process in.
	Applied func(action.Action)
}

func (o *Options) setDefaults() {
	if o.BatchMessages <= 0 {
		o.BatchMessages = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 8 << 20
	}
	if o.ParseWorkers <= 0 {
		o.ParseWorkers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Destinations == nil {
		o.Destinations = netpolicy.Default()
	}
	if o.ActionEnded == nil {
		o.ActionEnded = func(action.Action) {}
	}
	if o.Applied == nil {
		o.Applied = func(action.Action) {}
	}
}

// Syncer syncs accounts; one Syncer serves every task of a process.
type Syncer struct {
	store Store
	box   *secret.Box
	opts  Options
}

// New returns a Syncer over st, opening account passwords with box.
func New(st Store, box *secret.Box, opts Options) *Syncer {
	opts.setDefaults()
	return &Syncer{store: st, box: box, opts: opts}
}

// Run syncs the account of run.Task. It is a worker.Body.
func (s *Syncer) Run(ctx context.Context, run *worker.Run) error {
	acct, err := s.store.Account(ctx, run.Task.AccountID)
	if err != nil {
		return fmt.Errorf("syncer: %w", err)
	}
	cfg, err := s.accountConfig(acct)
	if err != nil {
		return err
	}
	if acct.IsOAuth2() {
		// The token is kept fresh for the whole run: a redial always has a current one, and a
		// revoked authorization ends the run within one token lifetime, not at its end.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			if err := s.opts.Tokens.Keep(ctx, acct.ID); err != nil {
				cancel(tokenFailed(err))
			}
		}()
	}
	a := &accountSync{
		s:    s,
		run:  run,
		acct: acct,
		log:  s.opts.Logger.With("task", run.Task.ID, "account", acct.ID),
		p:    task.Progress{Phase: "connecting"},
	}
	run.Report(a.p)
	a.cfg = cfg
	a.cfg.Stalled = run.Waiting
	if a.conn, err = imapconn.Dial(ctx, a.cfg); err != nil {
		return a.fail(ctx, "", a.public(err))
	}
	defer func() { a.conn.Close() }() // the connection in use at the end: fetches may redial
	// Actions first, then the pull: what the user asked for is on the server before the server's
	// state is read back, so the pull brings back the result rather than the state before it.
	if _, err := a.push(ctx); err != nil {
		return err
	}
	if err := a.sync(ctx); err != nil {
		return err
	}
	// Actions asked for while the pull ran are applied now, not at the next sync.
	done := a.p.Phase
	n, err := a.push(ctx)
	if n > 0 {
		a.p.Phase = done
		a.run.Report(a.p)
	}
	return err
}

// CheckLogin logs in to the account's server with password and logs out: an account is saved only
// once this has worked. A restricted account's destination is checked against the policy.
func (s *Syncer) CheckLogin(ctx context.Context, acct store.Account, password string) error {
	conn, err := imapconn.Dial(ctx, s.imapConfig(acct, password))
	if err != nil {
		return err
	}
	return conn.Close()
}

// CheckOAuthLogin logs in to the account's server with an OAuth2 access token for acct.Login and
// logs out: an OAuth2 account (or its new sign-in) is saved only once this has worked.
func (s *Syncer) CheckOAuthLogin(ctx context.Context, acct store.Account, token string) error {
	cfg := s.imapConfig(acct, "")
	cfg.OAuthToken = func(context.Context, string) (string, error) { return token, nil }
	conn, err := imapconn.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// accountConfig is how an account is reached and signed in to: with its password, or with the
// access tokens of Tokens. An account waiting for its owner to sign in again is not dialled.
func (s *Syncer) accountConfig(acct store.Account) (imapconn.Config, error) {
	if !acct.IsOAuth2() {
		password, err := s.box.Open(acct.SecretEnc, secret.AccountContext(acct.Login, acct.IMAPHost))
		if err != nil {
			return imapconn.Config{}, fmt.Errorf("syncer: password of account %d: %w", acct.ID, err)
		}
		return s.imapConfig(acct, string(password)), nil
	}
	if acct.ReauthRequired() {
		return imapconn.Config{}, tokenFailed(&oauth.Error{Class: "auth", Op: "token", Err: oauth.ErrReauthRequired})
	}
	if s.opts.Tokens == nil {
		return imapconn.Config{}, fmt.Errorf("syncer: account %d signs in with OAuth2, and this process has no OAuth2 providers configured", acct.ID)
	}
	cfg := s.imapConfig(acct, "")
	cfg.OAuthToken = func(ctx context.Context, refused string) (string, error) {
		a, err := s.opts.Tokens.Token(ctx, acct.ID, refused)
		return a.Token, err
	}
	return cfg, nil
}

// tokenFailed is the run's error for a token that could not be had: its class leads, as for
// IMAP errors.
func tokenFailed(err error) error {
	var e *oauth.Error
	if errors.As(err, &e) {
		return fmt.Errorf("syncer: %s error: %w", e.Class, err)
	}
	return fmt.Errorf("syncer: %w", err)
}

// imapConfig is how an account is reached.
func (s *Syncer) imapConfig(acct store.Account, password string) imapconn.Config {
	cfg := imapconn.Config{
		Host: acct.IMAPHost, Port: acct.IMAPPort, TLS: imapconn.TLSMode(acct.TLSMode), InsecureSkipVerify: acct.TLSSkipVerify,
		Login: acct.Login, Password: password,
		DialTimeout: s.opts.DialTimeout, CommandTimeout: s.opts.CommandTimeout, StallAfter: s.opts.StallAfter,
		Limits: s.opts.Limits, Logger: s.opts.Logger,
	}
	if acct.Restricted {
		cfg.Destinations = s.opts.Destinations
	}
	return cfg
}

// public is what a restricted account's owner may read of a failed dial: connect, TLS and
// greeting failures describe the server's network, so the task's error says only what kind of
// failure it was, and the detail goes to the operator's log.
func (a *accountSync) public(err error) error {
	var ie *imapconn.Error
	if !a.acct.Restricted || !errors.As(err, &ie) || !ie.Unreached() {
		return err
	}
	a.log.Warn("imap connect failed", "host", a.acct.IMAPHost, "port", a.acct.IMAPPort, "err", err)
	return ie.Public()
}

// accountSync is the state of one run.
type accountSync struct {
	s    *Syncer
	run  *worker.Run
	acct store.Account
	cfg  imapconn.Config
	conn *imapconn.Conn
	log  *slog.Logger

	// p is the progress; only the goroutine running sync changes it.
	p task.Progress
	// skipped names the folders and messages given up on, for the task's final phase.
	skipped []string
	// listed is the server's folder list when an action needed it (the special folders).
	listed []imapconn.Folder
	// restrictedSMTP: the SMTP server in use is under the destination policy, and what its
	// connection failures say is the operator's (see smtpText).
	restrictedSMTP bool
	// gone holds the stored folders the server no longer lists under their names but may list
	// under another (a rename), by MAILBOXID, until every folder has been selected; the rest are
	// then deleted.
	gone map[string]*store.Folder
}

// folderPlan is what one folder needs, decided from LIST-STATUS and its checkpoint.
type folderPlan struct {
	server imapconn.Folder
	stored *store.Folder // nil for a folder new to the store
	// expected is the estimate of new messages counted in MessagesTotal.
	expected int
}

func (a *accountSync) sync(ctx context.Context) error {
	a.p.Phase = "listing"
	a.run.Report(a.p)
	listed, err := a.conn.ListFolders(ctx)
	if err != nil {
		return a.fail(ctx, "", err)
	}
	storedList, err := a.s.store.Folders(ctx, a.acct.ID)
	if err != nil {
		return fmt.Errorf("syncer: %w", err)
	}
	stored := make(map[string]*store.Folder, len(storedList))
	for i := range storedList {
		stored[storedList[i].Name] = &storedList[i]
	}

	var plans []folderPlan
	onServer := make(map[string]bool, len(listed))
	for _, f := range listed {
		if f.NoSelect {
			continue
		}
		onServer[f.Name] = true
		if f.Undecodable {
			// One badly named folder is that folder's problem: go-imap could not take the name
			// back to the server, so it is skipped and said, and the account goes on.
			a.log.Warn("folder skipped: its name is not valid modified UTF-7", "folder", f.Name)
			a.skipped = append(a.skipped, fmt.Sprintf("%q: the server's name for it is not valid modified UTF-7 (RFC 3501 §5.1.3), so it cannot be opened", f.Name))
			continue
		}
		plan := folderPlan{server: f, stored: stored[f.Name]}
		plan.expected = expectedNew(f.Status, plan.stored)
		plans = append(plans, plan)
		a.p.MessagesTotal += plan.expected
	}
	a.p.FoldersTotal = len(plans)
	a.run.Report(a.p)

	// A gone folder with a MAILBOXID, on a server that reports them, may be renamed rather than
	// gone: it waits until every listed folder has been selected (syncFolder renames it when one
	// has its id). The others go now.
	a.gone = map[string]*store.Folder{}
	var goneNow []string
	for i, f := range storedList {
		switch {
		case onServer[f.Name]:
		case a.conn.Caps().ObjectID && f.MailboxID != "" && a.gone[f.MailboxID] == nil:
			a.gone[f.MailboxID] = &storedList[i]
		default:
			goneNow = append(goneNow, f.Name)
		}
	}
	if err := a.deleteFolders(ctx, goneNow); err != nil {
		return err
	}

	for _, plan := range plans {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if err := a.syncFolder(ctx, plan); err != nil {
			return err
		}
		a.p.FoldersDone++
		a.run.Report(a.p)
	}
	var notRenamed []string
	for _, f := range a.gone {
		notRenamed = append(notRenamed, f.Name)
	}
	slices.Sort(notRenamed)
	if err := a.deleteFolders(ctx, notRenamed); err != nil {
		return err
	}
	a.p.Phase = "done"
	if len(a.skipped) > 0 {
		a.p.Phase = fmt.Sprintf("done; skipped: %s", strings.Join(a.skipped, "; "))
	}
	a.run.Report(a.p)
	return nil
}

// deleteFolders deletes the stored folders the server no longer has.
func (a *accountSync) deleteFolders(ctx context.Context, names []string) error {
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		began := time.Now()
		if err := a.s.store.DeleteFolder(ctx, a.run.Lease(), a.p, a.acct.ID, name); err != nil {
			return a.storeFailed(ctx, err)
		}
		a.run.Beat(began)
		a.log.Info("folder gone from the server: deleted", "folder", name)
	}
	return nil
}

// expectedNew estimates how many messages a folder will download, from its STATUS.
func expectedNew(st imapconn.Status, cp *store.Folder) int {
	if cp == nil || cp.UIDValidity != st.UIDValidity {
		return int(st.Messages)
	}
	if st.UIDNext <= cp.UIDNext {
		return 0
	}
	return int(min(st.UIDNext-cp.UIDNext, st.Messages))
}

// fail turns an IMAP error into the task's error: the class (auth, throttled, transient,
// permanent) leads, so that a user sees at once whether to fix a password or wait. A stopped
// context wins: the worker must see its cause.
func (a *accountSync) fail(ctx context.Context, folder string, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var oe *oauth.Error
	if errors.As(err, &oe) {
		return tokenFailed(err)
	}
	where := "syncer"
	if folder != "" {
		where = fmt.Sprintf("syncer: folder %q", folder)
	}
	if class := imapconn.Classify(err); class != "" {
		return fmt.Errorf("%s: %s error: %w", where, class, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// storeFailed wraps a database error, preferring the context's cause when the run was stopped.
func (a *accountSync) storeFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return fmt.Errorf("syncer: %w", err)
}

// Watch holds an IMAP IDLE on the account's INBOX and calls changed each time the server reports a
// change there (new mail, expunge, flags), until ctx is done or the connection fails: IMAP push,
// so new mail is copied within seconds instead of at the next scheduled sync. It returns the error
// that ended it (ctx's cause when stopped); the caller waits and watches again.
//
// An OAuth2 account's connection is replaced by one signed in with a fresh token before the
// token it was opened with expires: providers end sessions whose token has expired. A change
// the old connection had not reported yet (Dovecot notices some a second or more late) would be
// lost with it, so the INBOX's status on the new connection is compared with the one the old
// connection began with; a difference counts as a change (at worst one sync too many).
func (s *Syncer) Watch(ctx context.Context, acct store.Account, changed func()) error {
	cfg, err := s.accountConfig(acct)
	if err != nil {
		return fmt.Errorf("syncer: watch account %d: %w", acct.ID, err)
	}
	var conn *imapconn.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var (
		renewAt time.Time // zero: no token to renew
		began   imapconn.Status
		used    oauth.Access // the token the last dial signed in with
	)
	if acct.IsOAuth2() {
		cfg.OAuthToken = func(ctx context.Context, refused string) (string, error) {
			a, err := s.opts.Tokens.Token(ctx, acct.ID, refused)
			used = a
			return a.Token, err
		}
	}
	for {
		if conn == nil || (!renewAt.IsZero() && !time.Now().Before(renewAt)) {
			next, err := imapconn.Dial(ctx, cfg)
			if err != nil {
				return fmt.Errorf("syncer: watch account %d: %w", acct.ID, err)
			}
			st, err := next.Status(ctx, "INBOX")
			if err != nil {
				next.Close()
				return fmt.Errorf("syncer: watch account %d: %w", acct.ID, err)
			}
			if conn != nil {
				conn.Close()
				s.opts.Logger.Debug("watch: signed in again with a fresh token", "account", acct.ID)
				if st != began {
					changed()
				}
			}
			conn, began = next, st
			if acct.IsOAuth2() {
				// Before the token the dial signed in with is due; a provider that is away
				// (Token handed out the current token past its refresh time) is asked again
				// within a minute, while the token still works.
				renewAt = used.RefreshAt
				if !renewAt.After(time.Now()) {
					renewAt = time.Now().Add(min(time.Minute, max(time.Until(used.Expiry)/2, time.Second)))
				}
			}
		}
		// RFC 2177: renew an IDLE at least every 29 minutes.
		wait := 25 * time.Minute
		if !renewAt.IsZero() {
			wait = max(min(wait, time.Until(renewAt)), 0)
		}
		seen, err := conn.Idle(ctx, "INBOX", wait)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			return fmt.Errorf("syncer: watch account %d: %w", acct.ID, err)
		}
		if seen {
			changed()
		}
	}
}
