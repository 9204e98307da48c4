package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"mailsync/internal/httpapi"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/instance"
	"mailsync/internal/store/storetest"
	"mailsync/internal/webhook"
)

// allowPrivateWebhooks lets the API's webhooks reach the tests' loopback receivers.
func allowPrivateWebhooks(c *instance.Config) {
	c.WebhookClient = webhook.ClientConfig{AllowPrivate: true, Timeout: 2 * time.Second}
}

// testReceiver is a loopback receiver that answers status and keeps the bodies it got.
type testReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	bodies []string
	sigs   []string
	stamps []string
}

func newTestReceiver(t *testing.T, status int) *testReceiver {
	r := &testReceiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(body))
		r.sigs = append(r.sigs, req.Header.Get(webhook.HeaderSignature))
		r.stamps = append(r.stamps, req.Header.Get(webhook.HeaderTimestamp))
		status := r.status
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

// TestWebhookLifecycle: create (the secret once), read, change, rotate, test, list deliveries,
// disable and enable, delete; and the validation of each input.
func TestWebhookLifecycle(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, allowPrivateWebhooks)
		ctx := context.Background()
		a := e.addAccount(e.alice, "work")
		bobs := e.addAccount(e.bob, "bobs")
		rcv := newTestReceiver(t, 204)

		var created httpapi.WebhookJSON
		e.request(e.alice, "POST", "/api/webhooks", map[string]any{"url": rcv.URL + "/hook", "account_ids": []int64{a.ID},
			"kinds": []string{"message.created", "message.deleted"}}).want(t, 201).json(t, &created)
		if !strings.HasPrefix(created.Secret, "whsec_") || !created.Enabled || len(created.AccountIDs) != 1 || len(created.Kinds) != 2 {
			t.Fatalf("created %+v", created)
		}
		path := fmt.Sprintf("/api/webhooks/%d", created.ID)

		// The secret is never shown again, and the database holds it sealed.
		got := e.request(e.alice, "GET", path, nil).want(t, 200)
		if strings.Contains(string(got.body), created.Secret) || strings.Contains(string(got.body), `"secret"`) {
			t.Fatalf("GET shows the secret: %s", got.body)
		}
		list := e.request(e.alice, "GET", "/api/webhooks", nil).want(t, 200)
		if strings.Contains(string(list.body), created.Secret) {
			t.Fatalf("the list shows the secret: %s", list.body)
		}
		stored, err := e.store.Webhook(ctx, created.ID)
		if err != nil || strings.Contains(string(stored.SecretEnc), created.Secret) || len(stored.SecretEnc) == 0 {
			t.Fatalf("the stored secret is not sealed: %v", err)
		}

		// Bad inputs are 422 problems that say what is wrong.
		for _, tc := range []struct {
			name string
			body map[string]any
			says string
		}{
			{"unknown kind", map[string]any{"url": rcv.URL, "all_accounts": true, "kinds": []string{"message.exploded"}}, "unknown change kind"},
			{"another user's account", map[string]any{"url": rcv.URL, "account_ids": []int64{bobs.ID}}, "not one of your accounts"},
			{"no accounts", map[string]any{"url": rcv.URL}, "which accounts"},
			{"accounts and all", map[string]any{"url": rcv.URL, "all_accounts": true, "account_ids": []int64{a.ID}}, "which accounts"},
			{"not http", map[string]any{"url": "ftp://example.test/x", "all_accounts": true}, "http://"},
			{"credentials in the URL", map[string]any{"url": "http://u:p@127.0.0.1/x", "all_accounts": true}, "credentials"},
		} {
			r := e.request(e.alice, "POST", "/api/webhooks", tc.body)
			r.wantProblem(t, http.StatusUnprocessableEntity)
			if !strings.Contains(string(r.body), tc.says) {
				t.Errorf("%s: %s does not say %q", tc.name, r.body, tc.says)
			}
		}

		// Another user sees nothing of it; an administrator may, with ?all=true.
		for _, m := range []string{"GET", "PATCH", "DELETE"} {
			e.request(e.bob, m, path, map[string]any{"enabled": false}).wantProblem(t, http.StatusNotFound)
		}
		for _, p := range []string{"/deliveries", "/test", "/rotate-secret"} {
			method := "POST"
			if p == "/deliveries" {
				method = "GET"
			}
			e.request(e.bob, method, path+p, nil).wantProblem(t, http.StatusNotFound)
		}
		var bobList []httpapi.WebhookJSON
		e.request(e.bob, "GET", "/api/webhooks", nil).want(t, 200).json(t, &bobList)
		if len(bobList) != 0 {
			t.Fatalf("bob lists %+v", bobList)
		}
		e.request(e.bob, "GET", "/api/webhooks?all=true", nil).wantProblem(t, http.StatusForbidden)
		var all []httpapi.WebhookJSON
		e.request(e.admin, "GET", "/api/webhooks?all=true", nil).want(t, 200).json(t, &all)
		if len(all) != 1 || all[0].UserID != e.alice.ID {
			t.Fatalf("admin's list %+v", all)
		}

		// A test event reaches the receiver signed, and is in the history.
		var att httpapi.AttemptJSON
		e.request(e.alice, "POST", path+"/test", nil).want(t, 200).json(t, &att)
		if att.Status != 204 || !att.OK || !att.Test {
			t.Fatalf("test attempt %+v", att)
		}
		rcv.mu.Lock()
		if len(rcv.bodies) != 1 || !strings.Contains(rcv.bodies[0], webhook.TestKind) {
			t.Fatalf("the receiver got %v", rcv.bodies)
		}
		if err := webhook.Verify(created.Secret, rcv.stamps[0], rcv.sigs[0], []byte(rcv.bodies[0]), time.Now(), time.Minute); err != nil {
			t.Fatal(err)
		}
		rcv.status = 500
		rcv.mu.Unlock()
		e.request(e.alice, "POST", path+"/test", nil).want(t, 200).json(t, &att)
		if att.Status != 500 || att.OK || !strings.Contains(att.Error, "HTTP 500") {
			t.Fatalf("a failing test event %+v", att)
		}
		var hist []httpapi.AttemptJSON
		e.request(e.alice, "GET", path+"/deliveries", nil).want(t, 200).json(t, &hist)
		if len(hist) != 2 || hist[0].Status != 500 || hist[1].Status != 204 {
			t.Fatalf("history %+v", hist)
		}

		// Rotation shows a new secret once; the next test event is signed with it.
		var rotated httpapi.WebhookJSON
		e.request(e.alice, "POST", path+"/rotate-secret", nil).want(t, 200).json(t, &rotated)
		if rotated.Secret == "" || rotated.Secret == created.Secret {
			t.Fatalf("rotated secret %q", rotated.Secret)
		}
		rcv.mu.Lock()
		rcv.status = 200
		rcv.mu.Unlock()
		e.request(e.alice, "POST", path+"/test", nil).want(t, 200)
		rcv.mu.Lock()
		last := len(rcv.bodies) - 1
		err = webhook.Verify(rotated.Secret, rcv.stamps[last], rcv.sigs[last], []byte(rcv.bodies[last]), time.Now(), time.Minute)
		rcv.mu.Unlock()
		if err != nil {
			t.Fatalf("after rotation: %v", err)
		}

		// Disable and enable; change kinds and accounts.
		var patched httpapi.WebhookJSON
		e.request(e.alice, "PATCH", path, map[string]any{"enabled": false}).want(t, 200).json(t, &patched)
		if patched.Enabled || !strings.Contains(patched.DisabledReason, e.alice.Email) {
			t.Fatalf("disabled %+v", patched)
		}
		e.request(e.alice, "PATCH", path, map[string]any{"enabled": true, "kinds": []string{}, "all_accounts": true}).want(t, 200).json(t, &patched)
		if !patched.Enabled || patched.DisabledReason != "" || len(patched.Kinds) != 0 || !patched.AllAccounts {
			t.Fatalf("enabled %+v", patched)
		}
		e.request(e.alice, "PATCH", path, map[string]any{"kinds": []string{"nope"}}).wantProblem(t, http.StatusUnprocessableEntity)

		var spec struct {
			Paths map[string]any `json:"paths"`
		}
		e.request(user{}, "GET", "/api/openapi.json", nil).want(t, 200).json(t, &spec)
		for _, p := range []string{"/api/webhooks", "/api/webhooks/{id}", "/api/webhooks/{id}/test", "/api/webhooks/{id}/deliveries",
			"/api/webhooks/{id}/rotate-secret"} {
			if spec.Paths[p] == nil {
				t.Errorf("the OpenAPI document lacks %s", p)
			}
		}

		e.request(e.alice, "DELETE", path, nil).want(t, 204)
		e.request(e.alice, "GET", path, nil).wantProblem(t, http.StatusNotFound)
	})
}

// TestWebhookPrivateURLRefusedByDefault: without the operator's permission a loopback or private
// receiver cannot be registered, and the refusal says how the operator allows it.
func TestWebhookPrivateURLRefusedByDefault(t *testing.T) {
	e := newEnv(t, "sqlite")
	for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost:9/x", "http://192.168.1.1/x", "http://[fe80::1]/x"} {
		r := e.request(e.alice, "POST", "/api/webhooks", map[string]any{"url": u, "all_accounts": true})
		r.wantProblem(t, http.StatusUnprocessableEntity)
		if !strings.Contains(string(r.body), "--webhook-allow-private") {
			t.Errorf("%s: %s", u, r.body)
		}
	}
}

// TestWebhookHealth: a disabled endpoint, and one whose oldest undelivered change is older than
// the warning threshold, make /api/health/sync warn, without naming either.
func TestWebhookHealth(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, allowPrivateWebhooks, func(c *instance.Config) { c.API.WebhookLagWarn = 50 * time.Millisecond })
		a := e.addAccount(e.alice, "work")
		var h httpapi.Health
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		if h.Status != "pass" || h.Checks["webhooks:disabled"][0].Status != "pass" {
			t.Fatalf("before any endpoint: %+v", h)
		}
		var w httpapi.WebhookJSON
		e.request(e.alice, "POST", "/api/webhooks", map[string]any{"url": "http://127.0.0.1:9/x", "account_ids": []int64{a.ID}}).want(t, 201).json(t, &w)
		storetest.SeedMessages(t, e.store, e.tasks, a.ID, "INBOX", 2) // nothing delivers them here
		time.Sleep(100 * time.Millisecond)
		e.request(e.alice, "GET", "/api/health/sync", nil).want(t, 200).json(t, &h)
		if h.Status != "warn" || h.Checks["webhooks:maxLag"][0].Status != "warn" {
			t.Fatalf("an endpoint behind: %+v", h)
		}
		var got httpapi.WebhookJSON
		e.request(e.alice, "GET", fmt.Sprintf("/api/webhooks/%d", w.ID), nil).want(t, 200).json(t, &got)
		if got.State.Behind != 4 || got.State.LagS <= 0 || got.State.OldestUndelivered == nil {
			t.Fatalf("state %+v", got.State)
		}
		e.request(e.alice, "PATCH", fmt.Sprintf("/api/webhooks/%d", w.ID), map[string]any{"enabled": false}).want(t, 200)
		r := e.request(e.bob, "GET", "/api/health/sync", nil).want(t, 200)
		r.json(t, &h)
		if h.Status != "warn" || h.Checks["webhooks:disabled"][0].ObservedValue != float64(1) {
			t.Fatalf("a disabled endpoint: %+v", h)
		}
		if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), e.alice.Email) {
			t.Fatalf("health names the endpoint or its owner: %s", r.body)
		}
	})
}
