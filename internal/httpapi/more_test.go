package httpapi_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

func TestMessages(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")
		const n = 25
		folderID := storetest.SeedMessages(t, e.store, e.tasks, a.ID, "INBOX", n)
		base := fmt.Sprintf("/api/accounts/%d", a.ID)

		var folders []httpapi.FolderJSON
		e.request(e.alice, "GET", base+"/folders", nil).want(t, 200).json(t, &folders)
		if len(folders) != 1 || folders[0].ID != folderID || folders[0].Name != "INBOX" || folders[0].Messages != n {
			t.Fatalf("folders %+v", folders)
		}

		type page struct {
			Messages   []httpapi.MessageJSON `json:"messages"`
			NextCursor string                `json:"next_cursor"`
		}
		seen := map[int64]bool{}
		cursor, pages := "", 0
		for {
			var p page
			e.request(e.alice, "GET", base+"/messages?limit=10&cursor="+cursor, nil).want(t, 200).json(t, &p)
			pages++
			for _, m := range p.Messages {
				if seen[m.ID] {
					t.Fatalf("message %d on two pages", m.ID)
				}
				seen[m.ID] = true
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if len(seen) != n || pages != 3 {
			t.Fatalf("%d messages in %d pages, want %d in 3", len(seen), pages, n)
		}

		var found page
		e.request(e.alice, "GET", base+"/messages?q=SENDER-7%40&folder="+fmt.Sprint(folderID), nil).want(t, 200).json(t, &found)
		if len(found.Messages) != 1 || found.Messages[0].Subject != "Subject 7" || found.NextCursor != "" {
			t.Fatalf("search: %+v", found)
		}
		m := found.Messages[0]
		var full httpapi.MessageJSON
		e.request(e.alice, "GET", fmt.Sprintf("/api/messages/%d", m.ID), nil).want(t, 200).json(t, &full)
		if full.BodyText != "body 7" || full.From != "sender-7@example.test" || len(full.Flags) != 1 {
			t.Fatalf("message %+v", full)
		}
		raw := e.request(e.alice, "GET", fmt.Sprintf("/api/messages/%d/raw", m.ID), nil).want(t, 200)
		if ct := raw.Header.Get("Content-Type"); ct != "message/rfc822" {
			t.Fatalf("raw Content-Type %q", ct)
		}
		if !bytes.Equal(raw.body, storetest.RawMessage(7)) {
			t.Fatalf("raw bytes %q, want exactly %q", raw.body, storetest.RawMessage(7))
		}
	})
}

func TestLoginSessionsAndCrossOrigin(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.request(user{}, "POST", "/api/login", map[string]string{"email": "alice@example.test", "password": "nope"}).wantProblem(t, 401)
	e.request(user{}, "POST", "/api/login", map[string]string{"email": "nobody@example.test", "password": "nope"}).wantProblem(t, 401)
	r := e.request(user{}, "POST", "/api/login", map[string]string{"email": "Alice@Example.test", "password": e.alice.Password}).want(t, 200)
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == httpapi.SessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Value == "" {
		t.Fatalf("session cookie %+v, want HttpOnly and SameSite", cookie)
	}
	withCookie := []string{"Cookie", httpapi.SessionCookie + "=" + cookie.Value}
	var me httpapi.UserJSON
	e.request(user{}, "GET", "/api/me", nil, withCookie...).want(t, 200).json(t, &me)
	if me.ID != e.alice.ID {
		t.Fatalf("me = %+v", me)
	}

	// The cookie works from the site's own pages, and never for another site's.
	a := e.addAccount(e.alice, "work")
	path := fmt.Sprintf("/api/accounts/%d/sync", a.ID)
	e.request(user{}, "POST", path, map[string]any{}, append(withCookie, "Sec-Fetch-Site", "same-origin")...).want(t, 202)
	e.request(user{}, "POST", path, map[string]any{}, append(withCookie, "Sec-Fetch-Site", "cross-site")...).wantProblem(t, 403)
	e.request(user{}, "POST", path, map[string]any{}, append(withCookie, "Origin", "https://evil.example")...).wantProblem(t, 403)
	// A GET is safe and stays allowed.
	e.request(user{}, "GET", "/api/me", nil, append(withCookie, "Sec-Fetch-Site", "cross-site")...).want(t, 200)

	out := e.request(user{}, "POST", "/api/logout", nil, withCookie...).want(t, 204)
	if c := out.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("logout cookies %+v, want the session cookie cleared", c)
	}

	// Guessing is slowed down: the env allows 5 attempts per minute per address.
	var last response
	for range 6 {
		last = e.request(user{}, "POST", "/api/login", map[string]string{"email": "bob@example.test", "password": "guess"})
	}
	last.wantProblem(t, http.StatusTooManyRequests)
	if last.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

// TestPasswordNeverLeaks: the IMAP password is in no response, no log line and no byte of the
// database, whatever happens to it.
func TestPasswordNeverLeaks(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		var bodies []string
		keep := func(r response) { bodies = append(bodies, string(r.body)+fmt.Sprint(r.Header)) }
		a := e.addAccount(e.alice, "work")
		acct := fmt.Sprintf("/api/accounts/%d", a.ID)
		wrong := "wrong-" + imapPassword
		huge := imapPassword + strings.Repeat("x", 2000)
		for _, r := range []response{
			e.request(e.alice, "GET", "/api/accounts", nil),
			e.request(e.alice, "GET", acct, nil),
			e.request(e.alice, "PATCH", acct, map[string]any{"imap_port": 1144}),          // refused: a new port needs the password
			e.request(e.alice, "PATCH", acct, map[string]any{"password": wrong}),          // refused; the fake echoes it
			e.request(e.alice, "PATCH", acct, map[string]any{"password": huge}),           // too long: huma would echo it
			e.request(e.alice, "POST", "/api/accounts", map[string]any{"password": huge}), // invalid
			e.request(e.alice, "POST", "/api/accounts", map[string]any{"name": "x", "imap_host": "h", "imap_port": 1, "tls_mode": "tls", "login": "l", "password": wrong}),
			e.request(e.alice, "GET", "/api/health/sync", nil),
			e.request(e.admin, "GET", "/api/health/sync/detailed", nil),
			e.request(user{}, "GET", "/metrics", nil),
		} {
			keep(r)
		}
		for i, b := range bodies {
			for _, secret := range []string{imapPassword, wrong} {
				if strings.Contains(b, secret) {
					t.Fatalf("response %d contains a password: %.300s", i, b)
				}
			}
		}
		if strings.Contains(e.logs.String(), imapPassword) || strings.Contains(e.logs.String(), wrong) {
			t.Fatal("the logs contain a password")
		}
		if !strings.Contains(bodies[3], "xxxxx") {
			t.Fatalf("the refused login's message was not scrubbed as expected: %s", bodies[3])
		}

		// The database holds it sealed, and it opens.
		stored, err := e.store.Account(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(stored.SecretEnc, []byte(imapPassword)) || len(stored.SecretEnc) == 0 {
			t.Fatal("secret_enc holds the password in the clear")
		}
		var dump []byte
		switch dialect {
		case "sqlite":
			// Every file of the database: the main file, the WAL and the shared memory.
			dir := strings.TrimPrefix(filepath.Dir(dbPath(t, e)), "sqlite:")
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(files) == 0 {
				t.Fatal("no database files found")
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				dump = append(dump, b...)
			}
		case "postgres":
			for _, table := range []string{"users", "api_tokens", "accounts", "sync_tasks"} {
				var s sql.NullString
				if err := e.store.DB().QueryRow(`SELECT string_agg(t::text, ' ') FROM ` + table + ` t`).Scan(&s); err != nil {
					t.Fatal(err)
				}
				dump = append(dump, s.String...)
			}
		}
		if !bytes.Contains(dump, []byte("alice@example.test")) {
			t.Fatal("the dump does not look like the database")
		}
		if bytes.Contains(dump, []byte(imapPassword)) {
			t.Fatal("the database contains the IMAP password in the clear")
		}
	})
}

// dbPath finds the SQLite file of e's store.
func dbPath(t *testing.T, e *env) string {
	t.Helper()
	var file string
	rows, err := e.store.DB().Query(`PRAGMA database_list`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq        int
			name, path string
		)
		if err := rows.Scan(&seq, &name, &path); err != nil {
			t.Fatal(err)
		}
		if name == "main" {
			file = path
		}
	}
	return file
}

func TestHealthMetricsAndOpenAPI(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect)
		a := e.addAccount(e.alice, "work")

		var h httpapi.Health
		r := e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200)
		if ct := r.Header.Get("Content-Type"); ct != "application/health+json" {
			t.Fatalf("Content-Type %q", ct)
		}
		r.json(t, &h)
		if h.Status != "pass" || len(h.Checks["sync:dead"]) != 1 {
			t.Fatalf("health of an idle system: %+v", h)
		}

		// A worker dies: the summary warns, and cleanup reaps it.
		st := e.startSync(e.alice, a.ID)
		claim(t, e)
		time.Sleep(e.tasks.Config().HeartbeatTimeout + 100*time.Millisecond)
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		if h.Status != "warn" || fmt.Sprint(h.Checks["sync:dead"][0].ObservedValue) != "1" {
			t.Fatalf("health with a dead task: %+v", h)
		}
		var detailed httpapi.Health
		e.request(e.admin, "GET", "/api/health/sync/detailed", nil).want(t, 200).json(t, &detailed)
		if len(detailed.Accounts) != 1 || detailed.Accounts[0].Syncing || detailed.Accounts[0].LastTask.ID != st.Task.ID {
			t.Fatalf("detailed: %+v", detailed)
		}
		var cleaned httpapi.Health
		e.request(e.admin, "POST", "/api/health/sync/cleanup", nil).want(t, 200).json(t, &cleaned)
		if len(cleaned.Reaped) != 1 || cleaned.Reaped[0].ID != st.Task.ID || cleaned.Reaped[0].State != task.Queued {
			t.Fatalf("cleanup: %+v, want the dead task re-queued", cleaned.Reaped)
		}
		var again httpapi.Health
		e.request(e.admin, "POST", "/api/health/sync/cleanup", nil).want(t, 200).json(t, &again)
		if len(again.Reaped) != 0 {
			t.Fatalf("a second cleanup reaped %d tasks: %+v", len(again.Reaped), again.Reaped)
		}

		var sys httpapi.Health
		e.request(e.admin, "GET", "/api/health/system", nil).want(t, 200).json(t, &sys)
		for _, k := range []string{"database:responseTime", "cpu:utilization", "memory:utilization", "disk:utilization", "process:goroutines", "process:uptime"} {
			if len(sys.Checks[k]) == 0 {
				t.Errorf("system health lacks %s: %+v", k, sys.Checks)
			}
		}
		if sys.Version != "test" {
			t.Errorf("version %q", sys.Version)
		}

		e.request(user{}, "GET", "/livez", nil).want(t, 200)
		e.request(user{}, "GET", "/readyz", nil).want(t, 200)
		metrics := string(e.request(user{}, "GET", "/metrics", nil).want(t, 200).body)
		for _, want := range []string{
			`mailsync_tasks{state="queued"} 1`,
			`mailsync_zombie_tasks_reaped_total 1`,
			`mailsync_http_requests_total{code="202",method="POST",route="POST /api/accounts/{id}/sync"} 1`,
			`mailsync_oldest_heartbeat_age_seconds`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}

		var spec struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		e.request(user{}, "GET", "/api/openapi.json", nil).want(t, 200).json(t, &spec)
		if !strings.HasPrefix(spec.OpenAPI, "3.1") {
			t.Fatalf("openapi %q", spec.OpenAPI)
		}
		for _, p := range []string{"/api/accounts", "/api/accounts/{id}/sync", "/api/sync/tasks/{id}/events", "/api/messages/{id}/raw", "/api/health/sync"} {
			if spec.Paths[p] == nil {
				t.Errorf("the OpenAPI document lacks %s", p)
			}
		}
	})
}

// TestPanicBecomesProblem: a panicking handler answers a 500 problem and logs, and the
// connection survives.
func TestPanicBecomesProblem(t *testing.T) {
	e := newEnv(t, "sqlite")
	h := e.srv.Recover(e.srv.Observe(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("panic answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var p struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != 500 {
		t.Fatalf("problem %q: %v", rec.Body, err)
	}
	if !strings.Contains(e.logs.String(), "boom") {
		t.Fatal("the panic was not logged")
	}
}

// TestDeletedTokenStopsWorking: a token removed from the database stops signing in once the
// short cache of token lookups has expired.
func TestDeletedTokenStopsWorking(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *instance.Config) { c.API.TokenCacheTTL = 100 * time.Millisecond })
	e.request(e.alice, "GET", "/api/me", nil).want(t, 200)
	toks, err := e.store.Tokens(context.Background(), e.alice.ID)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens %v %v", toks, err)
	}
	if err := e.store.DeleteToken(context.Background(), e.alice.ID, toks[0].ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	e.request(e.alice, "GET", "/api/me", nil).wantProblem(t, 401)
}

// A known path asked with a method it does not serve answers a 405 problem with its Allow header.
func TestMethodNotAllowedIsAProblem(t *testing.T) {
	e := newEnv(t, "sqlite")
	cases := []struct{ method, path, allow string }{
		{"PUT", "/api/accounts", "GET, POST"},
		{"POST", "/api/accounts/1/folders", "GET"},
		{"DELETE", "/api/sync/tasks/00000000-0000-0000-0000-000000000000/events", "GET"},
	}
	for _, tc := range cases {
		r := e.request(e.alice, tc.method, tc.path, nil)
		r.wantProblem(t, http.StatusMethodNotAllowed)
		if got := r.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}
