package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"mailsync/internal/httpapi"
	"mailsync/internal/store/storetest"
)

// fixture is alice's account with a task and a message, for the access tests.
type fixture struct {
	account   int64
	taskID    string
	messageID int64
}

func (e *env) fixture(t *testing.T) fixture {
	t.Helper()
	a := e.addAccount(e.alice, "work")
	storetest.SeedMessages(t, e.store, e.tasks, a.ID, "INBOX", 3)
	st := e.startSync(e.alice, a.ID)
	var page struct {
		Messages []httpapi.MessageJSON `json:"messages"`
	}
	e.request(e.alice, "GET", fmt.Sprintf("/api/accounts/%d/messages", a.ID), nil).want(t, 200).json(t, &page)
	if len(page.Messages) == 0 {
		t.Fatal("no messages seeded")
	}
	return fixture{account: a.ID, taskID: st.Task.ID, messageID: page.Messages[0].ID}
}

// access is the least a route asks of its caller.
type access int

const (
	member access = iota // any signed-in user
	admin                // an administrator
)

type route struct {
	method, path string
	body         any
	level        access
	owned        bool // a resource of alice's: another user gets 404
}

func (f fixture) routes() []route {
	acct := fmt.Sprintf("/api/accounts/%d", f.account)
	return []route{
		{"GET", "/api/me", nil, member, false},
		{"POST", "/api/accounts", map[string]any{"name": "x", "imap_host": "h", "imap_port": 143, "tls_mode": "none", "login": "l", "password": imapPassword}, member, false},
		{"GET", "/api/accounts", nil, member, false},
		{"GET", acct, nil, member, true},
		{"PATCH", acct, map[string]any{"name": "renamed"}, member, true},
		{"POST", acct + "/sync", map[string]any{"force_full": true}, member, true},
		{"GET", acct + "/sync", nil, member, true},
		{"GET", acct + "/folders", nil, member, true},
		{"GET", acct + "/messages", nil, member, true},
		{"GET", "/api/sync/tasks/" + f.taskID, nil, member, true},
		{"GET", "/api/sync/tasks/" + f.taskID + "/events", nil, member, true},
		{"POST", "/api/sync/tasks/" + f.taskID + "/cancel", nil, member, true},
		{"GET", fmt.Sprintf("/api/messages/%d", f.messageID), nil, member, true},
		{"GET", fmt.Sprintf("/api/messages/%d/raw", f.messageID), nil, member, true},
		{"GET", "/api/health/sync", nil, member, false},
		{"POST", "/api/health/sync/cleanup", nil, admin, false},
		{"GET", "/api/health/sync/detailed", nil, admin, false},
		{"GET", "/api/health/system", nil, admin, false},
		{"GET", "/api/users", nil, admin, false},
		{"DELETE", acct, nil, member, true}, // last: it removes the fixture
	}
}

// TestAccessControl: every route refuses strangers with 401, another user's resources answer
// 404 (and are left alone), admin routes answer 403 to others and 200 to admins.
func TestAccessControl(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		f := e.fixture(t)
		forged := user{Token: "mst_" + strings.Repeat("A", 52)}
		for _, r := range f.routes() {
			name := r.method + " " + r.path
			e.request(user{}, r.method, r.path, r.body).wantProblem(t, http.StatusUnauthorized)
			e.request(forged, r.method, r.path, r.body).wantProblem(t, http.StatusUnauthorized)
			e.request(user{}, r.method, r.path, r.body, "Cookie", httpapi.SessionCookie+"=forged").wantProblem(t, http.StatusUnauthorized)
			if r.owned {
				e.request(e.bob, r.method, r.path, r.body).wantProblem(t, http.StatusNotFound)
			}
			if r.level == admin {
				e.request(e.alice, r.method, r.path, r.body).wantProblem(t, http.StatusForbidden)
				if got := e.request(e.admin, r.method, r.path, r.body); got.StatusCode != 200 {
					t.Errorf("%s as admin: %d %s", name, got.StatusCode, got.body)
				}
			}
		}
		// Bob's attempts changed nothing of alice's.
		a, err := e.store.Account(context.Background(), f.account)
		if err != nil {
			t.Fatalf("bob's DELETE removed alice's account: %v", err)
		}
		if a.Name != "work" {
			t.Fatalf("bob's PATCH renamed alice's account to %q", a.Name)
		}
		tk, err := e.tasks.Get(context.Background(), f.taskID)
		if err != nil || !tk.CancelRequestedAt.IsZero() || !tk.State.Active() {
			t.Fatalf("bob's cancel reached alice's task: %+v %v", tk, err)
		}
		// And alice can do all of it.
		for _, r := range f.routes() {
			if r.level != member || strings.HasSuffix(r.path, "/events") {
				continue
			}
			if got := e.request(e.alice, r.method, r.path, r.body); got.StatusCode >= 300 {
				t.Errorf("%s %s as alice: %d %s", r.method, r.path, got.StatusCode, got.body)
			}
		}
	})
}

// TestBadInputs: every bad input is a 4xx problem document with a message, never a 500.
func TestBadInputs(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		f := e.fixture(t)
		acct := fmt.Sprintf("/api/accounts/%d", f.account)
		good := `"name":"n2","imap_host":"h","imap_port":143,"tls_mode":"none","login":"l"`
		for _, tc := range []struct {
			method, path string
			body         any
			want         int
			header       []string
		}{
			{"POST", "/api/accounts", `{`, 400, nil},
			{"POST", "/api/accounts", `not json`, 400, nil},
			{"POST", "/api/accounts", `{` + good + `,"password":"` + imapPassword + `","admin":true}`, 422, nil},
			{"POST", "/api/accounts", `{` + good + `,"password":42}`, 422, nil},
			{"POST", "/api/accounts", `{` + good + `}`, 422, nil},
			{"POST", "/api/accounts", `{"name":"n","imap_host":"h","imap_port":99999,"tls_mode":"none","login":"l","password":"p"}`, 422, nil},
			{"POST", "/api/accounts", `{"name":"n","imap_host":"h","imap_port":143,"tls_mode":"ssl","login":"l","password":"p"}`, 422, nil},
			{"POST", "/api/accounts", `{"name":"","imap_host":"h","imap_port":143,"tls_mode":"none","login":"l","password":"p"}`, 422, nil},
			{"POST", "/api/accounts", `{` + good + `,"password":"wrong"}`, 422, nil},
			{"POST", "/api/accounts", `{"name":"work","imap_host":"h","imap_port":143,"tls_mode":"none","login":"l","password":"` + imapPassword + `"}`, 409, nil},
			{"POST", "/api/accounts", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, nil},
			{"POST", "/api/accounts", `[]`, 422, nil},
			{"GET", "/api/accounts/abc", nil, 422, nil},
			{"GET", "/api/accounts/0", nil, 422, nil},
			{"GET", "/api/accounts/-5", nil, 422, nil},
			{"GET", "/api/accounts/99999999", nil, 404, nil},
			{"GET", "/api/accounts/99999999999999999999999", nil, 422, nil},
			{"PATCH", acct, `{"imap_port":0}`, 422, nil},
			{"PATCH", acct, `{"nickname":"x"}`, 422, nil},
			{"PATCH", acct, `{"password":"wrong"}`, 422, nil},
			{"POST", acct + "/sync", `{"force_full":"yes"}`, 422, nil},
			{"POST", acct + "/sync", `{"force_full":true,"extra":1}`, 422, nil},
			{"POST", acct + "/sync", `{`, 400, nil},
			{"GET", "/api/sync/tasks/not-a-uuid", nil, 422, nil},
			{"GET", "/api/sync/tasks/00000000-0000-4000-8000-000000000000", nil, 404, nil},
			{"GET", "/api/sync/tasks/not-a-uuid/events", nil, 422, nil},
			{"GET", "/api/sync/tasks/00000000-0000-4000-8000-000000000000/events", nil, 404, nil},
			{"GET", "/api/sync/tasks/" + f.taskID + "/events", nil, 400, []string{"Last-Event-ID", "yesterday"}},
			{"POST", "/api/sync/tasks/nope/cancel", nil, 422, nil},
			{"GET", acct + "/messages?cursor=!!!", nil, 400, nil},
			{"GET", acct + "/messages?cursor=AAAAAAAAAAAAAAAAAAAAAA", nil, 400, nil},
			{"GET", acct + "/messages?limit=0", nil, 422, nil},
			{"GET", acct + "/messages?limit=1000", nil, 422, nil},
			{"GET", acct + "/messages?limit=ten", nil, 422, nil},
			{"GET", acct + "/messages?folder=-1", nil, 422, nil},
			{"GET", acct + "/messages?q=" + strings.Repeat("q", 300), nil, 422, nil},
			{"GET", "/api/messages/x", nil, 422, nil},
			{"GET", "/api/messages/x/raw", nil, 422, nil},
			{"GET", "/api/messages/0/raw", nil, 422, nil},
			{"GET", "/api/messages/99999999/raw", nil, 404, nil},
			{"GET", "/api/no-such-thing", nil, 404, nil},
			{"POST", "/api/login", `{}`, 422, nil},
			{"POST", "/api/login", `{"email":"alice@example.test","password":"wrong"}`, 401, nil},
		} {
			r := e.request(e.alice, tc.method, tc.path, tc.body, tc.header...)
			if r.StatusCode != tc.want {
				t.Errorf("%s %s %.80v: %d, want %d; %.300s", tc.method, tc.path, tc.body, r.StatusCode, tc.want, r.body)
				continue
			}
			r.wantProblem(t, tc.want)
		}
	})
}
