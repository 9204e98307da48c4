package syncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"mailsync/internal/action"
	"mailsync/internal/imapconn"
	"mailsync/internal/oauth"
	"mailsync/internal/smtpsend"
	"mailsync/internal/store"
)

// The push: a task applies the account's open actions to the server, in order, before it pulls
// (and once more after, for those asked for meanwhile), so that actions and syncs of an account
// never run at once and every write is fenced by the task's lease (docs/actions.md).
//
// Each action is taken (store.TakeAction: fenced, counts the attempt), applied, and finished with
// the local edits of what it did (store.FinishAction: fenced, with its changes), so the store
// shows the result at once, without downloading anything again. What a retried action may have
// done already is looked for first: a message appended (a draft, the copy of a send) or copied
// (a move without MOVE) is searched for by its Message-ID; a MOVE of a UID that is gone moves
// nothing. A send is never submitted twice: see store.TakeAction.

// push applies the account's due open actions. An error that ends the connection ends the run
// (the action is tried again by a later task, after a backoff); an action the server refuses
// fails alone and the push goes on.
// It returns how many actions it took.
func (a *accountSync) push(ctx context.Context) (int, error) {
	open, err := a.s.store.OpenActions(ctx, a.acct.ID)
	if err != nil {
		return 0, a.storeFailed(ctx, err)
	}
	now, n := time.Now(), 0
	for _, act := range open {
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
		if act.State == action.Pending && act.NextAttemptAt.After(now) {
			continue // a send held back after a temporary failure; the others do not wait for it
		}
		n++
		if err := a.pushOne(ctx, act); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (a *accountSync) pushOne(ctx context.Context, act action.Action) error {
	a.phase(fmt.Sprintf("applying action %d (%s)", act.ID, act.Kind))
	began := time.Now()
	taken, err := a.s.store.TakeAction(ctx, a.run.Lease(), a.p, act.ID)
	if errors.Is(err, action.ErrNotOpen) {
		return nil // cancelled or ended meanwhile
	}
	if err != nil {
		return a.storeFailed(ctx, err)
	}
	a.run.Beat(began)
	if !taken.State.Open() {
		// A send found submitting (unknown) or an action out of attempts (failed).
		a.log.Warn("action ended without being applied", "action", taken.ID, "kind", taken.Kind, "state", taken.State, "error", taken.Error)
		a.s.opts.ActionEnded(taken)
		return nil
	}
	o, err := a.apply(ctx, taken)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// The connection failed under the action: it waits for a later task, and this run ends
		// as any run whose connection fails. A send the SMTP server took (the IMAP copy for Sent
		// is what failed) stays sent: the next task saves the copy and submits nothing.
		failed := store.Outcome{State: action.Pending, Error: err.Error(), RetryAt: time.Now().Add(retryDelay(taken.Attempts))}
		if taken.Kind == action.Send && (taken.State == action.Sent || o.Result.SMTP != "") {
			failed.State, failed.Result = action.Sent, o.Result
		}
		if _, ferr := a.s.store.FinishAction(ctx, a.run.Lease(), a.p, taken.ID, failed); ferr != nil {
			return a.storeFailed(ctx, ferr)
		}
		return a.fail(ctx, "", err)
	}
	a.s.opts.Applied(taken)
	done, err := a.s.store.FinishAction(ctx, a.run.Lease(), a.p, taken.ID, o)
	if err != nil {
		return a.storeFailed(ctx, err)
	}
	if !done.State.Open() {
		a.s.opts.ActionEnded(done)
	}
	a.log.Info("action applied", "action", done.ID, "kind", done.Kind, "state", done.State, "error", done.Error)
	return nil
}

// retryDelay is how long an action waits after its attempt-th attempt met a temporary failure.
func retryDelay(attempt int) time.Duration {
	delays := []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute}
	return delays[min(max(attempt-1, 0), len(delays)-1)]
}

// apply does one action. A returned error is one of the connection (the action is tried again
// later); what the server refused is the outcome's.
func (a *accountSync) apply(ctx context.Context, act action.Action) (store.Outcome, error) {
	switch act.Kind {
	case action.Flags:
		return a.applyFlags(ctx, act)
	case action.Move:
		return a.applyMove(ctx, act, act.Request.Folder)
	case action.Delete:
		return a.applyDelete(ctx, act)
	case action.Draft:
		return a.applyDraft(ctx, act)
	case action.Send:
		return a.applySend(ctx, act)
	}
	return store.Outcome{State: action.Failed, Error: fmt.Sprintf("unknown kind %q", act.Kind)}, nil
}

// refused is the outcome of an IMAP answer that refuses an action, or the error itself when it
// is one of the connection.
func refused(err error, what string, o store.Outcome) (store.Outcome, error) {
	switch {
	case imapconn.IsNoSuchFolder(err):
		o.State, o.Error = action.Failed, fmt.Sprintf("%s: the folder does not exist on the server", what)
	case imapconn.Classify(err) == "permanent":
		o.State, o.Error = action.Failed, fmt.Sprintf("%s: the server refused: %v", what, err)
	default:
		return o, err
	}
	return o, nil
}

// byFolder groups the stored messages of ids by folder, in the order of first appearance; ids not
// stored any more are returned apart.
func (a *accountSync) byFolder(ctx context.Context, ids []int64) (groups []folderGroup, gone []int64, err error) {
	refs, err := a.s.store.MessageRefs(ctx, a.acct.ID, ids)
	if err != nil {
		return nil, nil, err
	}
	at := map[string]int{}
	for _, id := range ids {
		r, ok := refs[id]
		if !ok {
			gone = append(gone, id)
			continue
		}
		i, seen := at[r.Folder]
		if !seen {
			i = len(groups)
			at[r.Folder] = i
			groups = append(groups, folderGroup{folder: r.Folder, modseq: r.HighestModSeq})
		}
		groups[i].refs = append(groups[i].refs, r)
	}
	return groups, gone, nil
}

type folderGroup struct {
	folder string
	modseq uint64
	refs   []store.MessageRef
}

func (g folderGroup) uids() imapconn.UIDSet {
	uids := make([]uint32, len(g.refs))
	for i, r := range g.refs {
		uids[i] = r.UID
	}
	return imapconn.UIDs(uids...)
}

// applyFlags sends the flag deltas folder by folder. With CONDSTORE each STORE carries
// UNCHANGEDSINCE the folder's stored HIGHESTMODSEQ: a message changed on the server since
// mailsync's copy is refused by the server (MODIFIED), read again, and compared: the flags the
// other change touched are left as it made them (reported as a conflict), the rest of the delta
// is applied.
func (a *accountSync) applyFlags(ctx context.Context, act action.Action) (store.Outcome, error) {
	add, remove := act.Request.Add, act.Request.Remove
	o := store.Outcome{State: action.Done}
	groups, gone, err := a.byFolder(ctx, act.Request.Messages)
	if err != nil {
		return o, err
	}
	o.Result.Gone = gone
	for _, g := range groups {
		since := uint64(0)
		if a.conn.Caps().CondStore {
			since = g.modseq
		}
		res, err := a.conn.StoreFlags(ctx, g.folder, g.uids(), add, remove, since)
		if err != nil {
			return refused(err, fmt.Sprintf("flags in %q", g.folder), o)
		}
		modified := map[uint32]bool{}
		for _, uid := range res.Modified {
			modified[uid] = true
		}
		var server map[uint32][]string
		if len(res.Modified) > 0 {
			updates, err := a.conn.FlagsOf(ctx, g.folder, imapconn.UIDs(res.Modified...))
			if err != nil {
				return refused(err, fmt.Sprintf("flags in %q", g.folder), o)
			}
			server = make(map[uint32][]string, len(updates))
			for _, u := range updates {
				server[u.UID] = u.Flags
			}
		}
		for _, r := range g.refs {
			if !modified[r.UID] {
				o.Result.Applied = append(o.Result.Applied, r.ID)
				o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Flags: action.ApplyDelta(r.Flags, add, remove)})
				continue
			}
			now, ok := server[r.UID]
			if !ok {
				o.Result.Gone = append(o.Result.Gone, r.ID) // expunged meanwhile
				o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Removed: true})
				continue
			}
			kept := changedElsewhere(r.Flags, now, append(slices.Clone(add), remove...))
			restAdd := withoutFlags(add, kept)
			restRemove := withoutFlags(remove, kept)
			if len(restAdd)+len(restRemove) > 0 {
				if _, err := a.conn.StoreFlags(ctx, g.folder, imapconn.UIDs(r.UID), restAdd, restRemove, 0); err != nil {
					return refused(err, fmt.Sprintf("flags in %q", g.folder), o)
				}
			}
			o.Result.Conflict = append(o.Result.Conflict, action.FlagConflict{Message: r.ID, Server: nonNilFlags(now), Kept: nonNilFlags(kept)})
			o.Result.Applied = append(o.Result.Applied, r.ID)
			o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Flags: action.ApplyDelta(now, restAdd, restRemove)})
			if len(kept) > 0 {
				o.State = action.Conflict
			}
		}
	}
	if o.State == action.Conflict {
		o.Error = "some flags were changed on the server since mailsync's copy and were left as the other change made them (see result.conflict)"
	}
	return o, nil
}

// changedElsewhere lists the flags of touched whose presence differs between before (mailsync's
// copy) and now (the server's).
func changedElsewhere(before, now, touched []string) []string {
	var out []string
	for _, f := range touched {
		if action.HasFlag(before, f) != action.HasFlag(now, f) {
			out = append(out, f)
		}
	}
	return out
}

func withoutFlags(flags, drop []string) []string {
	var out []string
	for _, f := range flags {
		if !action.HasFlag(drop, f) {
			out = append(out, f)
		}
	}
	return out
}

func nonNilFlags(f []string) []string {
	if f == nil {
		return []string{}
	}
	return f
}

// applyMove moves the messages to dest, folder by folder, and has the stored rows follow them
// (COPYUID). Without MOVE a retried attempt first looks in dest for what the first one copied.
func (a *accountSync) applyMove(ctx context.Context, act action.Action, dest string) (store.Outcome, error) {
	o := store.Outcome{State: action.Done}
	groups, gone, err := a.byFolder(ctx, act.Request.Messages)
	if err != nil {
		return o, err
	}
	o.Result.Gone = gone
	for _, g := range groups {
		if g.folder == dest {
			for _, r := range g.refs {
				o.Result.Applied = append(o.Result.Applied, r.ID)
			}
			continue
		}
		refs := g.refs
		if act.Attempts > 1 && !a.conn.Caps().Move {
			var copied []store.MessageRef
			if refs, copied, err = a.alreadyIn(ctx, dest, refs); err != nil {
				return refused(err, fmt.Sprintf("move to %q", dest), o)
			}
			if len(copied) > 0 {
				// The first attempt copied these and died before the expunge.
				g := folderGroup{folder: g.folder, refs: copied}
				if err := a.conn.Expunge(ctx, g.folder, g.uids()); err != nil {
					return refused(err, fmt.Sprintf("move to %q", dest), o)
				}
				for _, r := range copied {
					o.Result.Applied = append(o.Result.Applied, r.ID)
					o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Removed: true})
				}
			}
			if len(refs) == 0 {
				continue
			}
		}
		moving := folderGroup{folder: g.folder, refs: refs}
		res, err := a.conn.Move(ctx, g.folder, moving.uids(), dest)
		if err != nil {
			return refused(err, fmt.Sprintf("move to %q", dest), o)
		}
		for _, r := range refs {
			newUID, ok := res.Map[r.UID]
			switch {
			case ok:
				o.Result.Applied = append(o.Result.Applied, r.ID)
				o.Local = append(o.Local, store.LocalEdit{Message: r.ID, MovedTo: dest, UID: newUID, UIDValidity: res.DestUIDValidity})
			case len(res.Map) == 0 && !a.conn.Caps().UIDPlus:
				// No COPYUID from this server: the message moved, but where it is now is the
				// pull's to find (it downloads it there).
				o.Result.Applied = append(o.Result.Applied, r.ID)
				o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Removed: true})
			default:
				// Not moved: the server no longer had it (a retry after the first attempt moved
				// it, or it was expunged elsewhere). The pull finds it wherever it is.
				o.Result.Gone = append(o.Result.Gone, r.ID)
				o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Removed: true})
			}
		}
	}
	return o, nil
}

// alreadyIn splits refs into those not found in folder by Message-ID and those found there.
func (a *accountSync) alreadyIn(ctx context.Context, folder string, refs []store.MessageRef) (rest, found []store.MessageRef, err error) {
	for _, r := range refs {
		if r.MessageID == "" {
			rest = append(rest, r)
			continue
		}
		uids, err := a.conn.SearchHeader(ctx, folder, "Message-ID", r.MessageID)
		if err != nil {
			return nil, nil, err
		}
		if len(uids) > 0 {
			found = append(found, r)
		} else {
			rest = append(rest, r)
		}
	}
	return rest, found, nil
}

// applyDelete moves the messages to Trash, or expunges those in Trash already (all of them with
// Permanent).
func (a *accountSync) applyDelete(ctx context.Context, act action.Action) (store.Outcome, error) {
	o := store.Outcome{State: action.Done}
	trash, err := a.specialFolder(ctx, `\Trash`)
	if err != nil {
		return o, err
	}
	if trash == "" && !act.Request.Permanent {
		o.State, o.Error = action.Failed, "the account has no Trash folder (no folder has the \\Trash attribute or a usual Trash name); delete with permanent=true to expunge"
		return o, nil
	}
	groups, gone, err := a.byFolder(ctx, act.Request.Messages)
	if err != nil {
		return o, err
	}
	o.Result.Gone = gone
	var toTrash []int64
	for _, g := range groups {
		if !act.Request.Permanent && g.folder != trash {
			for _, r := range g.refs {
				toTrash = append(toTrash, r.ID)
			}
			continue
		}
		if err := a.conn.Expunge(ctx, g.folder, g.uids()); err != nil {
			return refused(err, fmt.Sprintf("expunge in %q", g.folder), o)
		}
		for _, r := range g.refs {
			o.Result.Applied = append(o.Result.Applied, r.ID)
			o.Local = append(o.Local, store.LocalEdit{Message: r.ID, Removed: true})
		}
	}
	if len(toTrash) == 0 {
		return o, nil
	}
	moveAct := act
	moveAct.Request.Messages = toTrash
	moved, err := a.applyMove(ctx, moveAct, trash)
	moved.Result.Applied = append(o.Result.Applied, moved.Result.Applied...)
	moved.Result.Gone = append(o.Result.Gone, moved.Result.Gone...)
	moved.Local = append(o.Local, moved.Local...)
	return moved, err
}

// applyDraft appends the composed draft to Drafts with \Draft, then removes the draft it replaces.
func (a *accountSync) applyDraft(ctx context.Context, act action.Action) (store.Outcome, error) {
	o := store.Outcome{State: action.Done}
	drafts, err := a.specialFolder(ctx, `\Drafts`)
	if err != nil {
		return o, err
	}
	if drafts == "" {
		o.State, o.Error = action.Failed, "the account has no Drafts folder (no folder has the \\Drafts attribute or a usual Drafts name)"
		return o, nil
	}
	appended, err := a.appendOnce(ctx, act, drafts, []string{`\Draft`, `\Seen`})
	if err != nil {
		return refused(err, fmt.Sprintf("save in %q", drafts), o)
	}
	o.Result.Appended = appended
	if act.Request.Replaces != 0 {
		groups, _, err := a.byFolder(ctx, []int64{act.Request.Replaces})
		if err != nil {
			return o, err
		}
		for _, g := range groups {
			if err := a.conn.Expunge(ctx, g.folder, g.uids()); err != nil {
				return refused(err, fmt.Sprintf("remove the old draft from %q", g.folder), o)
			}
			o.Local = append(o.Local, store.LocalEdit{Message: act.Request.Replaces, Removed: true})
		}
	}
	return o, nil
}

// appendOnce appends the action's composed message to folder, unless a retried attempt finds
// it there already (by its Message-ID, fresh for every composed message).
func (a *accountSync) appendOnce(ctx context.Context, act action.Action, folder string, flags []string) (*action.Appended, error) {
	if act.Attempts > 1 && act.Request.MessageID != "" {
		uids, err := a.conn.SearchHeader(ctx, folder, "Message-ID", act.Request.MessageID)
		if err != nil {
			return nil, err
		}
		if len(uids) > 0 {
			return &action.Appended{Folder: folder, UID: uids[0]}, nil
		}
	}
	raw, err := a.s.store.ActionMessage(ctx, act.ID)
	if err != nil {
		return nil, err
	}
	res, err := a.conn.Append(ctx, folder, flags, time.Now(), raw)
	if err != nil {
		return nil, err
	}
	return &action.Appended{Folder: folder, UID: res.UID}, nil
}

// specialFolder names the account's folder for a RFC 6154 use (\Trash, \Drafts, \Sent): the one
// with the attribute, else the first with a usual name, "" when there is none. The server's
// list is asked once per run, when an action needs it.
func (a *accountSync) specialFolder(ctx context.Context, use string) (string, error) {
	if a.listed == nil {
		listed, err := a.conn.ListFolders(ctx)
		if err != nil {
			return "", err
		}
		a.listed = listed
	}
	return pickSpecial(a.listed, use), nil
}

// usualNames are the names servers give special folders that carry no attribute.
var usualNames = map[string][]string{
	`\Trash`:  {"Trash", "Deleted Items", "Deleted Messages", "Deleted", "[Gmail]/Trash", "INBOX.Trash", "INBOX/Trash", "Bin"},
	`\Drafts`: {"Drafts", "Draft", "[Gmail]/Drafts", "INBOX.Drafts", "INBOX/Drafts"},
	`\Sent`:   {"Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail", "INBOX.Sent", "INBOX/Sent"},
}

func pickSpecial(folders []imapconn.Folder, use string) string {
	for _, f := range folders {
		if !f.NoSelect && slices.ContainsFunc(f.Attributes, func(attr string) bool { return strings.EqualFold(attr, use) }) {
			return f.Name
		}
	}
	for _, name := range usualNames[use] {
		for _, f := range folders {
			if !f.NoSelect && strings.EqualFold(f.Name, name) {
				return f.Name
			}
		}
	}
	return ""
}

// applySend submits the composed message over SMTP and saves a copy in Sent. It records
// "submitting" right before DATA and "sent" with the server's answer: a crash between the two
// leaves the send unknown (store.TakeAction), never sent again by itself.
func (a *accountSync) applySend(ctx context.Context, act action.Action) (store.Outcome, error) {
	o := store.Outcome{State: action.Done, Result: act.Result}
	smtp, err := a.s.store.AccountSMTP(ctx, a.acct.ID)
	if errors.Is(err, store.ErrNotFound) {
		o.State, o.Error = action.Failed, "the account has no SMTP server to send with: set one (PUT /api/accounts/{id}/smtp, or mailsync account edit --smtp-url)"
		return o, nil
	}
	if err != nil {
		return o, err
	}
	if act.State != action.Sent {
		raw, err := a.s.store.ActionMessage(ctx, act.ID)
		if err != nil {
			return o, err
		}
		cfg := a.smtpConfig(smtp)
		var marked bool
		var markErr error
		answer, err := smtpsend.Send(ctx, cfg, act.Request.From, act.Request.Recipients, raw, func() error {
			began := time.Now()
			if markErr = a.s.store.MarkSubmitting(ctx, a.run.Lease(), a.p, act.ID); markErr != nil {
				return markErr
			}
			a.run.Beat(began)
			marked = true
			return nil
		})
		var se *smtpsend.Error
		temporary := errors.As(err, &se) && se.Temporary
		switch {
		case err == nil:
		case smtpsend.Uncertain(err):
			o.State = action.Unknown
			o.Error = "the connection to the SMTP server failed after the message was handed over: it may or may not have been sent; retry to send it again (" + a.smtpText(err) + ")"
			return o, nil
		case markErr != nil:
			return o, markErr // the lease was lost before DATA: nothing was handed over
		case errors.Is(err, oauth.ErrReauthRequired):
			o.State, o.Error = action.Failed, "not sent: the account must sign in again (its provider no longer accepts its authorization)"
			return o, nil
		case !marked && ctx.Err() != nil:
			return o, context.Cause(ctx)
		case temporary && act.Attempts < action.MaxAttempts:
			// Nothing was taken (a refusal before DATA, or a 4xx reply to it): try again later,
			// without holding up the account's other actions.
			o.State, o.Error, o.RetryAt = action.Pending, "not sent yet (will retry): "+a.smtpText(err), time.Now().Add(retryDelay(act.Attempts))
			return o, nil
		case temporary:
			o.State, o.Error = action.Failed, fmt.Sprintf("not sent after %d attempts: %s", act.Attempts, a.smtpText(err))
			return o, nil
		default:
			o.State, o.Error = action.Failed, "the SMTP server refused: "+a.smtpText(err)
			return o, nil
		}
		// The server took it: whatever happens to this record, the send must never go back to
		// pending. A lost lease leaves it submitting (unknown to the next task); any other
		// failure here is left to the finish, which records it sent.
		if err := a.s.store.MarkSent(ctx, a.run.Lease(), a.p, act.ID, answer); err != nil {
			a.log.Warn("send accepted by the SMTP server but not recorded as sent yet", "action", act.ID, "err", err)
		}
		o.Result.SMTP = answer
	}
	if smtp.SavesSent {
		return o, nil
	}
	sent, err := a.specialFolder(ctx, `\Sent`)
	if err != nil {
		return o, err
	}
	if sent == "" {
		o.Error = "sent; no copy was saved: the account has no Sent folder"
		return o, nil
	}
	appended, err := a.appendOnce(ctx, act, sent, []string{`\Seen`})
	if err != nil {
		if out, err := refused(err, fmt.Sprintf("sent; the copy for %q", sent), o); err == nil {
			out.State = action.Done // it was sent: the copy is what failed, and the error says so
			return out, nil
		}
		return o, err
	}
	o.Result.Appended = appended
	return o, nil
}

// smtpText is an SMTP error as the account's owner may read it: a restricted account's connect
// failure says only what kind of failure it was (the operator's log has the detail).
func (a *accountSync) smtpText(err error) string {
	var se *smtpsend.Error
	if a.restrictedSMTP && errors.As(err, &se) && (se.Stage == "connect" || se.Stage == "tls") {
		a.log.Warn("smtp connect failed", "err", err)
		return "the SMTP server could not be reached (the operator's log has the detail)"
	}
	return err.Error()
}

// smtpConfig is how the account submits: its IMAP login and secret, over the account's TLS
// certificate choice, through the destination policy when the account is restricted.
func (a *accountSync) smtpConfig(c store.SMTP) smtpsend.Config {
	a.restrictedSMTP = a.acct.Restricted || c.Restricted
	cfg := smtpsend.Config{
		Host: c.Host, Port: c.Port, TLS: smtpsend.TLSMode(c.TLSMode), InsecureSkipVerify: a.acct.TLSSkipVerify,
		Login: a.acct.Login, Password: a.cfg.Password,
		DialTimeout: a.s.opts.DialTimeout, CommandTimeout: a.s.opts.CommandTimeout,
	}
	if a.acct.IsOAuth2() && a.s.opts.Tokens != nil {
		tokens, id := a.s.opts.Tokens, a.acct.ID
		cfg.Token = func(ctx context.Context) (string, error) {
			t, err := tokens.Token(ctx, id, "")
			return t.Token, err
		}
	}
	if a.acct.Restricted || c.Restricted {
		cfg.Dial = policyDialer(c.Host, a.s.opts.Destinations, a.s.opts.DialTimeout)
	}
	return cfg
}

// policyDialer dials only the addresses the policy allows for host, checked after DNS resolution.
func policyDialer(host string, p imapconn.DestinationPolicy, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("refused by the destination policy: cannot read the address %q", address)
		}
		if err := p.Check(host, ap.Addr()); err != nil {
			return fmt.Errorf("refused by the destination policy: %w", err)
		}
		return nil
	}}
	return d.DialContext
}

// CheckSMTP logs in to the SMTP server c with the account's credentials and quits: an account's
// SMTP settings are stored only once this has worked.
func (s *Syncer) CheckSMTP(ctx context.Context, acct store.Account, c store.SMTP) error {
	cfg, err := s.accountConfig(acct)
	if err != nil {
		return err
	}
	a := &accountSync{s: s, acct: acct, cfg: cfg, log: s.opts.Logger}
	sc := a.smtpConfig(c)
	if sc.Token == nil && acct.IsOAuth2() {
		return errors.New("this process has no OAuth2 providers configured")
	}
	if err := smtpsend.Check(ctx, sc); err != nil {
		return errors.New(a.smtpText(err))
	}
	return nil
}
