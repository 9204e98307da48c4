package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/changes"
	"mailsync/internal/store"
)

// The reading side of the change feed (docs/changes.md): pages per account, pages over all of a
// user's accounts with a cursor that holds one position per account, and a live stream. The
// change log is the truth everywhere: nothing here keeps changes in memory beyond one page.

// ChangeJSON is a change as the API, the stream and webhooks show it.
type ChangeJSON struct {
	ID        string       `json:"id" doc:"The change's idempotency id, ACCOUNT:SEQ: the same in the API, the stream and webhook deliveries."`
	AccountID int64        `json:"account_id"`
	Seq       int64        `json:"seq" doc:"The change's number in its account's log: 1, 2, 3, ... without gaps, in commit order."`
	Kind      changes.Kind `json:"kind" enum:"message.created,message.updated,message.deleted,folder.created,folder.renamed,folder.deleted,folder.reset,sync.succeeded,sync.failed"`
	Folder    string       `json:"folder" doc:"The folder the change is about; empty for sync.*."`
	UID       uint32       `json:"uid" doc:"The message's UID in the folder for message.*; else 0."`
	TaskID    string       `json:"task_id" doc:"The sync task whose transaction wrote the change; empty when none did."`
	At        time.Time    `json:"at" doc:"The database clock when the change was committed."`
	Data      changeData   `json:"data" doc:"The kind's payload."`
}

// NewChangeJSON is c as the API shows it (the CLI's --json prints the same).
func NewChangeJSON(c changes.Change) ChangeJSON {
	return ChangeJSON{ID: changes.ID(c.AccountID, c.Seq), AccountID: c.AccountID, Seq: c.Seq, Kind: c.Kind,
		Folder: c.Folder, UID: c.UID, TaskID: c.TaskID, At: c.At, Data: changeData(c.Data)}
}

// changeData is a change's payload as stored: it is served as it is, and described in the
// OpenAPI document as one of the payload types of package changes.
type changeData json.RawMessage

func (d changeData) MarshalJSON() ([]byte, error) {
	if len(d) == 0 {
		return []byte("{}"), nil
	}
	return d, nil
}

func (d *changeData) UnmarshalJSON(b []byte) error {
	*d = append((*d)[:0], b...)
	return nil
}

func (changeData) Schema(r huma.Registry) *huma.Schema {
	s := &huma.Schema{Description: "message.created: ChangeMessage; message.updated: ChangeFlags; " +
		"message.deleted: ChangeMessageGone; folder.*: ChangeFolder; sync.*: ChangeSync."}
	for _, t := range []reflect.Type{reflect.TypeFor[ChangeMessage](), reflect.TypeFor[ChangeFlags](),
		reflect.TypeFor[ChangeMessageGone](), reflect.TypeFor[ChangeFolder](), reflect.TypeFor[ChangeSync]()} {
		s.OneOf = append(s.OneOf, r.Schema(t, true, ""))
	}
	return s
}

// The payload types of package changes under the names the OpenAPI document gives them.
type (
	ChangeMessage     changes.Message
	ChangeFlags       changes.FlagUpdate
	ChangeMessageGone changes.MessageGone
	ChangeFolder      changes.Folder
	ChangeSync        changes.Sync
)

// Problem types of the change feed (RFC 9457 "type"): a client tells a pruned cursor from a
// malformed one without reading the prose. They are URNs: names to compare, not pages to fetch
// (docs/changes.md describes them).
const (
	ProblemCursorGone = "urn:mailsync:problem:cursor-gone"
	ProblemBadCursor  = "urn:mailsync:problem:bad-cursor"
)

// cursorProblem is the problem document of a cursor the log cannot serve: 410 when the changes
// after it were pruned (or it points past the log), 400 when it is not a cursor at all.
type cursorProblem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Accounts are the accounts whose position is gone.
	Accounts []int64 `json:"accounts,omitempty"`
	// Head is, for one account's log, where to continue after re-reading its folders.
	Head *int64 `json:"head,omitempty"`
	// Resume is, for a cursor over several accounts, the cursor to continue from after re-reading
	// the folders of Accounts: theirs moved to their heads, the others' as they were.
	Resume *string `json:"resume,omitempty"`
}

func (p *cursorProblem) Error() string  { return p.Detail }
func (p *cursorProblem) GetStatus() int { return p.Status }
func (p *cursorProblem) ContentType(ct string) string {
	if ct == "application/json" {
		return "application/problem+json"
	}
	return ct
}

// write sends the problem from a plain handler.
func (p *cursorProblem) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func badCursor(err error) *cursorProblem {
	return &cursorProblem{Type: ProblemBadCursor, Title: http.StatusText(http.StatusBadRequest), Status: http.StatusBadRequest, Detail: err.Error()}
}

// reReadAdvice is what every gone cursor tells the reader to do.
const reReadAdvice = "re-read the account's folders and messages (GET /api/accounts/{id}/folders and /messages), then continue from the head given here"

func goneForAccount(accountID, after int64, head store.ChangeHead) *cursorProblem {
	last := head.Last
	detail := fmt.Sprintf("the changes of account %d after %d are no longer kept (the oldest kept is %d): %s",
		accountID, after, head.Floor+1, reReadAdvice)
	if after > head.Last {
		detail = fmt.Sprintf("account %d has no change %d: its log ends at %d (was the database restored?): %s",
			accountID, after, head.Last, reReadAdvice)
	}
	return &cursorProblem{Type: ProblemCursorGone, Title: http.StatusText(http.StatusGone), Status: http.StatusGone,
		Detail: detail, Accounts: []int64{accountID}, Head: &last}
}

func goneForCursor(gone []int64, resume cursor) *cursorProblem {
	r := resume.String()
	return &cursorProblem{Type: ProblemCursorGone, Title: http.StatusText(http.StatusGone), Status: http.StatusGone,
		Detail: fmt.Sprintf("the cursor's position in the log of account(s) %v is no longer kept: for each of them, %s (\"resume\" is that cursor)",
			gone, reReadAdvice),
		Accounts: gone, Resume: &r}
}

// checkPosition reports whether after is a position the account's log can serve.
func checkPosition(after int64, head store.ChangeHead) bool {
	return after >= head.Floor && after <= head.Last
}

type accountChangesInput struct {
	ID    int64 `path:"id" minimum:"1" doc:"The account's id."`
	After int64 `query:"after" minimum:"0" doc:"The seq of the last change the reader has; 0: from the first."`
	Limit int   `query:"limit" minimum:"0" maximum:"1000" default:"100" doc:"At most this many changes; 0 reads none and only answers the head."`
}

type accountChangesOutput struct {
	Body struct {
		Changes []ChangeJSON `json:"changes"`
		Next    int64        `json:"next" doc:"The after of the next page: the last change's seq, or after when there was none."`
		Head    int64        `json:"head" doc:"The account's last change when the request was served."`
	}
}

// accountChanges is a page of one account's change log.
func (s *Server) accountChanges(ctx context.Context, in *accountChangesInput) (*accountChangesOutput, error) {
	if _, err := s.ownAccount(ctx, in.ID); err != nil {
		return nil, err
	}
	head, err := s.store.ChangeHead(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	out := &accountChangesOutput{}
	out.Body.Changes, out.Body.Next, out.Body.Head = []ChangeJSON{}, in.After, head.Last
	if in.Limit == 0 {
		return out, nil
	}
	if !checkPosition(in.After, head) {
		return nil, goneForAccount(in.ID, in.After, head)
	}
	cs, err := s.store.Changes(ctx, in.ID, in.After, in.Limit)
	if errors.Is(err, changes.ErrGone) { // pruned since the head was read
		if head, err = s.store.ChangeHead(ctx, in.ID); err != nil {
			return nil, err
		}
		return nil, goneForAccount(in.ID, in.After, head)
	}
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		out.Body.Changes = append(out.Body.Changes, NewChangeJSON(c))
	}
	if len(cs) > 0 {
		out.Body.Next = cs[len(cs)-1].Seq
		out.Body.Head = max(out.Body.Head, out.Body.Next)
	}
	return out, nil
}

type changesInput struct {
	After    string  `query:"after" maxLength:"65536" doc:"The cursor of the last change the reader has (the next of a page, the id of a stream event); empty: from each account's first change."`
	Limit    int     `query:"limit" minimum:"0" maximum:"1000" default:"100" doc:"At most this many changes in all; 0 reads none and only answers the head."`
	Accounts []int64 `query:"accounts" doc:"Only these accounts (comma-separated ids); default: every account of yours."`
}

type changesOutput struct {
	Body struct {
		Changes []ChangeJSON `json:"changes" doc:"In order within each account; accounts are interleaved by commit time."`
		Next    string       `json:"next" doc:"The cursor to pass as after for the next page."`
		Head    string       `json:"head" doc:"The cursor at every account's last change when the request was served."`
	}
}

// scope is the accounts a request over several accounts reads, sorted: the user's, or those of
// filter, each of which must be the user's (else 404, as for any other account route). own is
// every account of the user's.
func (s *Server) scope(ctx context.Context, filter []int64) (ids []int64, own map[int64]bool, err error) {
	accts, err := s.store.Accounts(ctx, userFrom(ctx).ID)
	if err != nil {
		return nil, nil, err
	}
	own = make(map[int64]bool, len(accts))
	ids = make([]int64, 0, len(accts))
	for _, a := range accts {
		own[a.ID] = true
		ids = append(ids, a.ID)
	}
	if len(filter) > 0 {
		ids = ids[:0]
		for _, id := range filter {
			if !own[id] {
				return nil, nil, huma.Error404NotFound(fmt.Sprintf("account %d not found", id))
			}
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, own, nil
}

// heads reads the change heads of ids and checks pos against them: the accounts whose position
// the logs cannot serve come back as a 410 problem.
func (s *Server) heads(ctx context.Context, ids []int64, pos cursor) (map[int64]store.ChangeHead, error) {
	heads := make(map[int64]store.ChangeHead, len(ids))
	var gone []int64
	for _, id := range ids {
		h, err := s.store.ChangeHead(ctx, id)
		if err != nil {
			return nil, err
		}
		heads[id] = h
		if !checkPosition(pos[id], h) {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		resume := pos.clone()
		for _, id := range gone {
			resume[id] = heads[id].Last
		}
		return heads, goneForCursor(gone, resume)
	}
	return heads, nil
}

// readChanges reads the changes after pos of the accounts ids, at most limit in all, shared
// fairly: each round asks every account that still has changes for an equal part of what is
// left (rounded up), and when that is more than is left keeps the oldest, so a busy account
// holds no other back, and a small limit over many accounts does not serve the same ones page
// after page. The result is in commit order within each account and merged by commit time
// across them; next is pos moved past it.
func (s *Server) readChanges(ctx context.Context, ids []int64, pos cursor, limit int) ([]changes.Change, cursor, error) {
	next := pos.clone()
	for _, id := range ids {
		next[id] = pos[id] // every account of the scope is named, at 0 too
	}
	perAccount := make(map[int64][]changes.Change, len(ids))
	active := slices.Clone(ids)
	for left := limit; left > 0 && len(active) > 0; {
		share := (left + len(active) - 1) / len(active)
		round := make(map[int64][]changes.Change, len(active))
		var still []int64
		for _, id := range active {
			cs, err := s.store.Changes(ctx, id, next[id], share)
			if errors.Is(err, changes.ErrGone) { // pruned since the heads were read
				h, herr := s.store.ChangeHead(ctx, id)
				if herr != nil {
					return nil, nil, herr
				}
				resume := pos.clone()
				resume[id] = h.Last
				return nil, nil, goneForCursor([]int64{id}, resume)
			}
			if err != nil {
				return nil, nil, err
			}
			round[id] = cs
			if len(cs) == share {
				still = append(still, id)
			}
		}
		// A prefix of the merge is a prefix of every account's list: the positions stay exact.
		kept := mergeByTime(active, round)
		if len(kept) > left {
			kept = kept[:left]
		}
		for _, c := range kept {
			perAccount[c.AccountID] = append(perAccount[c.AccountID], c)
			next[c.AccountID] = c.Seq
		}
		left -= len(kept)
		active = still
	}
	return mergeByTime(ids, perAccount), next, nil
}

// mergeByTime merges per-account lists, each in seq order, by commit time: taking always the
// earliest head keeps every account's own order even where the clock does not (on PostgreSQL a
// change's time is its transaction's start, which can come before the one numbered before it).
func mergeByTime(ids []int64, per map[int64][]changes.Change) []changes.Change {
	var out []changes.Change
	for {
		best := int64(-1)
		for _, id := range ids {
			if len(per[id]) == 0 {
				continue
			}
			if best < 0 || per[id][0].At.Before(per[best][0].At) {
				best = id
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, per[best][0])
		per[best] = per[best][1:]
	}
}

// allChanges is a page of the change logs of several of the user's accounts.
func (s *Server) allChanges(ctx context.Context, in *changesInput) (*changesOutput, error) {
	pos, err := parseCursor(in.After)
	if err != nil {
		return nil, badCursor(err)
	}
	ids, own, err := s.scope(ctx, in.Accounts)
	if err != nil {
		return nil, err
	}
	pos.keep(own)
	heads, err := s.heads(ctx, ids, pos)
	out := &changesOutput{}
	head := cursor{}
	for _, id := range ids {
		head[id] = heads[id].Last
	}
	if in.Limit == 0 {
		if err != nil && !isGone(err) {
			return nil, err
		}
		out.Body.Changes, out.Body.Next, out.Body.Head = []ChangeJSON{}, in.After, head.String()
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	cs, next, err := s.readChanges(ctx, ids, pos, in.Limit)
	if err != nil {
		return nil, err
	}
	out.Body.Changes = make([]ChangeJSON, 0, len(cs))
	for _, c := range cs {
		out.Body.Changes = append(out.Body.Changes, NewChangeJSON(c))
	}
	for _, id := range ids {
		head[id] = max(head[id], next[id])
	}
	out.Body.Next, out.Body.Head = next.String(), head.String()
	return out, nil
}

func isGone(err error) bool {
	var p *cursorProblem
	return errors.As(err, &p) && p.Status == http.StatusGone
}
