package httpapi_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"mailsync/internal/httpapi"
	"mailsync/internal/store/storetest"
)

// seedMessages stores n messages in INBOX and an empty Archive for a new account of alice's, and
// returns the account and the messages as the API lists them (newest first).
func (e *env) seedMessages(t *testing.T, n int) (httpapi.AccountJSON, []httpapi.MessageJSON) {
	t.Helper()
	a := e.addAccount(e.alice, "mail")
	w := e.changeWriter(t, a.ID)
	w.add(t, "INBOX", n)
	w.commit(t, w.newMessages("Archive", 0))
	return a, e.listMessages(t, a.ID, "")
}

func (e *env) listMessages(t *testing.T, account int64, query string) []httpapi.MessageJSON {
	t.Helper()
	var page struct {
		Messages []httpapi.MessageJSON `json:"messages"`
	}
	e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/messages%s", account, query), nil).want(t, 200).json(t, &page)
	return page.Messages
}

func (e *env) folderID(t *testing.T, account int64, name string) int64 {
	t.Helper()
	var folders []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/folders", account), nil).want(t, 200).json(t, &folders)
	for _, f := range folders {
		if f.Name == name {
			return f.ID
		}
	}
	t.Fatalf("account %d has no folder %q: %+v", account, name, folders)
	return 0
}

// TestActionsAreStoredAndShownPending: each action is answered 202 with its row; until it is
// applied, reads show the messages as it will leave them.
func TestActionsAreStoredAndShownPending(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a, msgs := e.seedMessages(t, 3)
		inbox := e.folderID(t, a.ID, "INBOX")
		var flags httpapi.ActionJSON
		e.request(e.alice, "POST", fmt.Sprintf("/api/messages/%d/flags", msgs[0].ID),
			map[string]any{"add": []string{`\Flagged`}, "remove": []string{`\Seen`}}).want(t, 202).json(t, &flags)
		if flags.Kind != "flags" || flags.State != "pending" || !slices.Equal(flags.Messages, []int64{msgs[0].ID}) {
			t.Fatalf("flags action = %+v", flags)
		}
		var move httpapi.ActionJSON
		e.request(e.alice, "POST", fmt.Sprintf("/api/messages/%d/move", msgs[1].ID), map[string]any{"folder": "Archive"}).
			want(t, 202).json(t, &move)
		var del httpapi.ActionJSON
		e.request(e.alice, "DELETE", fmt.Sprintf("/api/messages/%d", msgs[2].ID), nil).want(t, 202).json(t, &del)
		if del.Kind != "delete" || del.Permanent {
			t.Fatalf("delete action = %+v", del)
		}

		// The overlay: flags as they will be; the moved and the deleted message out of INBOX.
		listed := e.listMessages(t, a.ID, fmt.Sprintf("?folder=%d", inbox))
		if len(listed) != 1 || listed[0].ID != msgs[0].ID || !slices.Equal(listed[0].Flags, []string{`\Flagged`}) ||
			len(listed[0].Pending) != 1 || listed[0].Pending[0].ActionID != flags.ID {
			t.Fatalf("INBOX with pending actions = %+v", listed)
		}
		var moved httpapi.MessageJSON
		e.request(e.alice, "GET", fmt.Sprintf("/api/messages/%d", msgs[1].ID), nil).want(t, 200).json(t, &moved)
		if moved.FolderID != e.folderID(t, a.ID, "Archive") || len(moved.Pending) != 1 || moved.Pending[0].Kind != "move" {
			t.Fatalf("the message being moved = %+v", moved)
		}
		all := e.listMessages(t, a.ID, "")
		if len(all) != 2 {
			t.Fatalf("every folder lists %d messages, want 2 (the deleted one left out)", len(all))
		}

		var open struct {
			Actions []httpapi.ActionJSON `json:"actions"`
		}
		e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/actions?open=true", a.ID), nil).want(t, 200).json(t, &open)
		if len(open.Actions) != 3 || open.Actions[0].ID != del.ID {
			t.Fatalf("open actions = %+v, want 3 newest first", open.Actions)
		}
		// Cancel a pending one: the message shows as it is again.
		var cancelled httpapi.ActionJSON
		e.request(e.alice, "DELETE", fmt.Sprintf("/api/actions/%d", del.ID), nil).want(t, 200).json(t, &cancelled)
		if cancelled.State != "cancelled" || cancelled.FinishedAt == nil {
			t.Fatalf("cancelled = %+v", cancelled)
		}
		if got := e.listMessages(t, a.ID, ""); len(got) != 3 {
			t.Fatalf("after the cancel %d messages are listed, want 3", len(got))
		}
		e.request(e.alice, "POST", fmt.Sprintf("/api/actions/%d/retry", flags.ID), nil).wantProblem(t, 409)
		e.request(e.alice, "DELETE", fmt.Sprintf("/api/actions/%d", del.ID), nil).wantProblem(t, 409)
		// Another user sees none of it.
		e.request(e.bob, "GET", fmt.Sprintf("/api/actions/%d", flags.ID), nil).wantProblem(t, 404)
		e.request(e.bob, "POST", fmt.Sprintf("/api/messages/%d/flags", msgs[0].ID), map[string]any{"add": []string{`\Seen`}}).wantProblem(t, 404)
		e.request(e.bob, "POST", fmt.Sprintf("/api/accounts/%d/messages/delete", a.ID), map[string]any{"messages": []int64{msgs[0].ID}}).wantProblem(t, 404)
	})
}

// TestActionsRefuseBadInput: what cannot be applied is refused before anything is stored.
func TestActionsRefuseBadInput(t *testing.T) {
	e := newEnv(t, "sqlite")
	a, msgs := e.seedMessages(t, 1)
	id := msgs[0].ID
	for _, tc := range []struct {
		name, path string
		body       any
	}{
		{"no flag", fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{}},
		{"a flag with a space", fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{"add": []string{"a b"}}},
		{"a flag with CRLF", fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{"add": []string{"x\r\nA1 LOGOUT"}}},
		{"an unknown system flag", fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{"add": []string{`\Bogus`}}},
		{`\Recent`, fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{"add": []string{`\Recent`}}},
		{"added and removed", fmt.Sprintf("/api/messages/%d/flags", id), map[string]any{"add": []string{`\Seen`}, "remove": []string{`\seen`}}},
		{"a folder with LF", fmt.Sprintf("/api/messages/%d/move", id), map[string]any{"folder": "a\nb"}},
		{"an unknown folder", fmt.Sprintf("/api/messages/%d/move", id), map[string]any{"folder": "Nowhere"}},
		{"a message of no account of the path", fmt.Sprintf("/api/accounts/%d/messages/move", a.ID), map[string]any{"messages": []int64{id, 999999}, "folder": "Archive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.request(e.alice, "POST", tc.path, tc.body).wantProblem(t, 422)
		})
	}
	var open struct {
		Actions []httpapi.ActionJSON `json:"actions"`
	}
	e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/actions", a.ID), nil).want(t, 200).json(t, &open)
	if len(open.Actions) != 0 {
		t.Fatalf("refused requests stored actions: %+v", open.Actions)
	}
}

// TestActionIdempotencyKey: 100 concurrent POSTs with one Idempotency-Key make one action; the key
// with another request is refused.
func TestActionIdempotencyKey(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a, msgs := e.seedMessages(t, 2)
		const posts = 100
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[int64]int{}
		)
		for range posts {
			wg.Go(func() {
				r := e.request(e.alice, "POST", fmt.Sprintf("/api/accounts/%d/messages/flags", a.ID),
					map[string]any{"messages": []int64{msgs[0].ID, msgs[1].ID}, "add": []string{`\Seen`}},
					"Idempotency-Key", "click-1")
				if r.StatusCode != 202 {
					t.Errorf("status %d: %s", r.StatusCode, r.body)
					return
				}
				var got httpapi.ActionJSON
				r.json(t, &got)
				mu.Lock()
				ids[got.ID]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(ids) != 1 {
			t.Fatalf("%d POSTs with one key made actions %v, want one", posts, ids)
		}
		var all struct {
			Actions []httpapi.ActionJSON `json:"actions"`
		}
		e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/actions", a.ID), nil).want(t, 200).json(t, &all)
		if len(all.Actions) != 1 {
			t.Fatalf("the account has %d actions, want 1", len(all.Actions))
		}
		e.request(e.alice, "POST", fmt.Sprintf("/api/accounts/%d/messages/flags", a.ID),
			map[string]any{"messages": []int64{msgs[0].ID}, "add": []string{`\Seen`}}, "Idempotency-Key", "click-1").wantProblem(t, 422)
	})
}
