package httpapi_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"mailsync/internal/httpapi"
)

// FuzzRequestDecoders throws arbitrary bodies, query strings and headers at every decoder of the
// API: the answer must never be a 5xx, and every refusal must be a problem document.
func FuzzRequestDecoders(f *testing.F) {
	e := newEnv(f, "sqlite")
	a := e.addAccount(e.alice, "work")
	st := e.startSync(e.alice, a.ID)
	acct := fmt.Sprintf("/api/accounts/%d", a.ID)
	for _, s := range []string{
		`{}`, `{"force_full":true}`, `{"name":"x","imap_host":"h","imap_port":143,"tls_mode":"none","login":"l","password":"` + imapPassword + `"}`,
		`{"imap_port":1e400}`, `{"name":"\u0000"}`, `[`, `null`, `"str"`, `{"a":{"b":{"c":[[[[]]]]}}}`, `{"limit":-1}`,
		`{"email":"alice@example.test","password":"x"}`, `{"sync_interval_s":9223372036854775808}`,
	} {
		f.Add(s, "limit=5&cursor=abc&q=%25", "12")
	}
	h := e.srv.Handler()
	f.Fuzz(func(t *testing.T, body, query, lastEventID string) {
		for _, r := range []struct{ method, path string }{
			{"POST", "/api/accounts"},
			{"PATCH", acct},
			{"POST", acct + "/sync"},
			{"POST", "/api/login"},
			{"GET", acct + "/messages"},
			{"GET", "/api/sync/tasks/" + st.Task.ID + "/events"},
		} {
			req := httptest.NewRequest(r.method, r.path, strings.NewReader(body))
			req.URL.RawQuery = query
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+e.alice.Token)
			req.Header.Set("Last-Event-ID", lastEventID)
			if strings.HasSuffix(r.path, "/events") {
				// A stream only ends by itself once the task does; its decoder is all we test.
				if _, err := httpapi.ParseLastEventID(lastEventID); err == nil {
					continue
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s with %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
			}
			if rec.Code >= 400 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
				t.Fatalf("%s %s with %q: %d without a problem document: %s", r.method, r.path, body, rec.Code, rec.Body)
			}
		}
	})
}
