package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"mailsync/internal/changes"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/webhook"
)

// The webhook routes: a user's endpoints, which the deliverers of every instance send the change
// log of the user's accounts to (package webhook; docs/changes.md#webhooks). The signing secret
// is shown once, when it is made (create, rotate), and never again.

// WebhookJSON is an endpoint as its owner sees it.
type WebhookJSON struct {
	ID             int64     `json:"id"`
	UserID         int64     `json:"user_id"`
	URL            string    `json:"url"`
	Kinds          []string  `json:"kinds" doc:"The change kinds sent; empty: every kind."`
	AllAccounts    bool      `json:"all_accounts" doc:"Every account of the user is sent, those added later included."`
	AccountIDs     []int64   `json:"account_ids" doc:"The accounts sent (with all_accounts: those that have a cursor so far)."`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason" doc:"Why deliveries stopped; empty while enabled."`
	CreatedAt      time.Time `json:"created_at"`
	// Secret is the HMAC-SHA256 signing secret, only in the answers of create and rotate-secret.
	Secret string           `json:"secret,omitempty" doc:"The signing secret: only in the answer that made it, never again."`
	State  WebhookStateJSON `json:"state"`
}

// WebhookStateJSON is how far behind an endpoint is.
type WebhookStateJSON struct {
	Behind            int64      `json:"behind" doc:"Changes of its accounts not yet acknowledged (of any kind)."`
	LagS              float64    `json:"lag_s" doc:"Age in seconds of the oldest change not yet acknowledged; 0: caught up."`
	OldestUndelivered *time.Time `json:"oldest_undelivered_at" nullable:"true"`
	FailingSince      *time.Time `json:"failing_since" nullable:"true" doc:"When the current run of failed attempts began; null: not failing."`
	LastError         string     `json:"last_error"`
}

func webhookJSON(w store.Webhook, st store.WebhookState) WebhookJSON {
	kinds := make([]string, len(w.Kinds))
	for i, k := range w.Kinds {
		kinds[i] = string(k)
	}
	ids := w.AccountIDs
	if ids == nil {
		ids = []int64{}
	}
	out := WebhookJSON{ID: w.ID, UserID: w.UserID, URL: w.URL, Kinds: kinds, AllAccounts: w.AllAccounts, AccountIDs: ids,
		Enabled: w.Enabled, DisabledReason: w.DisabledReason, CreatedAt: w.CreatedAt,
		State: WebhookStateJSON{Behind: st.Behind, OldestUndelivered: nullTime(st.OldestUndelivered),
			FailingSince: nullTime(st.FailingSince), LastError: st.LastError}}
	if !st.OldestUndelivered.IsZero() {
		out.State.LagS = max(st.Now.Sub(st.OldestUndelivered), 0).Seconds()
	}
	return out
}

// AttemptJSON is one delivery attempt in an endpoint's history.
type AttemptJSON struct {
	ID         int64     `json:"id"`
	DeliveryID string    `json:"delivery_id" doc:"The X-Mailsync-Delivery header of the request."`
	AccountID  int64     `json:"account_id" doc:"0 for a test event."`
	At         time.Time `json:"at"`
	Test       bool      `json:"test"`
	Status     int       `json:"status" doc:"The receiver's HTTP status; 0: no answer."`
	OK         bool      `json:"ok" doc:"The receiver answered 2xx."`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error"`
	FirstSeq   int64     `json:"first_seq"`
	LastSeq    int64     `json:"last_seq"`
	Count      int       `json:"count" doc:"Changes the batch carried."`
}

func attemptJSON(a store.Attempt) AttemptJSON {
	return AttemptJSON{ID: a.ID, DeliveryID: a.DeliveryID, AccountID: a.AccountID, At: a.At, Test: a.Test, Status: a.Status,
		OK: a.Error == "" && a.Status >= 200 && a.Status < 300, LatencyMS: a.Latency.Milliseconds(), Error: a.Error,
		FirstSeq: a.FirstSeq, LastSeq: a.LastSeq, Count: a.Count}
}

func webhookNotFound(id int64) error {
	return huma.Error404NotFound(fmt.Sprintf("webhook %d not found", id))
}

// ownWebhook returns an endpoint of the signed-in user (an administrator may reach every one);
// another user's answers 404 like a missing one.
func (s *Server) ownWebhook(ctx context.Context, id int64) (store.Webhook, error) {
	w, err := s.store.Webhook(ctx, id)
	u := userFrom(ctx)
	if errors.Is(err, store.ErrNotFound) || (err == nil && w.UserID != u.ID && !u.IsAdmin) {
		return store.Webhook{}, webhookNotFound(id)
	}
	return w, err
}

func (s *Server) webhookOut(ctx context.Context, w store.Webhook) (WebhookJSON, error) {
	states, err := s.store.WebhookStates(ctx, w.UserID)
	if err != nil {
		return WebhookJSON{}, err
	}
	return webhookJSON(w, states[w.ID]), nil
}

// parseKinds validates the kinds a client sent.
func parseKinds(in []string) ([]changes.Kind, error) {
	var out []changes.Kind
	for _, k := range in {
		kind := changes.Kind(strings.TrimSpace(k))
		if !kind.Valid() {
			known := make([]string, len(changes.Kinds))
			for i, k := range changes.Kinds {
				known[i] = string(k)
			}
			return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("unknown change kind %q; the kinds are %s", k, strings.Join(known, ", ")))
		}
		if !slices.Contains(out, kind) {
			out = append(out, kind)
		}
	}
	return out, nil
}

// checkAccounts refuses accounts that are not the owner's, as 422 naming them (no 404: the body
// is not a path).
func (s *Server) checkAccounts(ctx context.Context, owner int64, ids []int64) error {
	for _, id := range ids {
		a, err := s.store.Account(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && a.UserID != owner) {
			return huma.Error422UnprocessableEntity(fmt.Sprintf("account %d is not one of your accounts", id))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) checkWebhookURL(ctx context.Context, raw string) error {
	if err := s.cfg.Webhooks.Client().CheckURL(ctx, raw); err != nil {
		return huma.Error422UnprocessableEntity("cannot send webhooks to " + raw + ": " + err.Error())
	}
	return nil
}

type webhookBody struct {
	URL         string   `json:"url" minLength:"8" maxLength:"2000" doc:"Where the batches are POSTed: http:// or https://."`
	Kinds       []string `json:"kinds,omitempty" maxItems:"20" doc:"Change kinds to send; omitted or empty: every kind."`
	AccountIDs  []int64  `json:"account_ids,omitempty" maxItems:"1000" doc:"The accounts to send; or all_accounts."`
	AllAccounts bool     `json:"all_accounts,omitempty" doc:"Send every account of yours, those added later included."`
}

type webhookInput struct{ Body webhookBody }

type webhookOutput struct {
	Status int
	Body   WebhookJSON
}

func (s *Server) createWebhook(ctx context.Context, in *webhookInput) (*webhookOutput, error) {
	b, u := in.Body, userFrom(ctx)
	kinds, err := parseKinds(b.Kinds)
	if err != nil {
		return nil, err
	}
	if b.AllAccounts == (len(b.AccountIDs) > 0) {
		return nil, huma.Error422UnprocessableEntity("say which accounts to send: either account_ids or \"all_accounts\": true")
	}
	if err := s.checkAccounts(ctx, u.ID, b.AccountIDs); err != nil {
		return nil, err
	}
	url := strings.TrimSpace(b.URL)
	if err := s.checkWebhookURL(ctx, url); err != nil {
		return nil, err
	}
	plain := webhook.NewSecret()
	w, err := s.store.CreateWebhook(ctx, store.Webhook{UserID: u.ID, URL: url, Kinds: kinds, AllAccounts: b.AllAccounts,
		AccountIDs: b.AccountIDs}, func(id int64) []byte { return s.cfg.Box.Seal([]byte(plain), secret.WebhookContext(id)) })
	if err != nil {
		return nil, err
	}
	out, err := s.webhookOut(ctx, w)
	if err != nil {
		return nil, err
	}
	out.Secret = plain
	s.log.Info("httpapi: webhook added", "webhook", w.ID, "user", u.ID)
	return &webhookOutput{Status: http.StatusCreated, Body: out}, nil
}

type webhookListInput struct {
	All bool `query:"all" doc:"Every user's endpoints (administrators only)."`
}

type webhooksOutput struct{ Body []WebhookJSON }

func (s *Server) listWebhooks(ctx context.Context, in *webhookListInput) (*webhooksOutput, error) {
	u := userFrom(ctx)
	owner := u.ID
	if in.All {
		if !u.IsAdmin {
			return nil, huma.Error403Forbidden("every user's webhooks are for administrators only")
		}
		owner = 0
	}
	hooks, err := s.store.Webhooks(ctx, owner)
	if err != nil {
		return nil, err
	}
	states, err := s.store.WebhookStates(ctx, owner)
	if err != nil {
		return nil, err
	}
	out := make([]WebhookJSON, 0, len(hooks))
	for _, w := range hooks {
		out = append(out, webhookJSON(w, states[w.ID]))
	}
	return &webhooksOutput{Body: out}, nil
}

type webhookIDInput struct {
	ID int64 `path:"id" minimum:"1" doc:"The webhook's id."`
}

func (s *Server) getWebhook(ctx context.Context, in *webhookIDInput) (*webhookOutput, error) {
	w, err := s.ownWebhook(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	out, err := s.webhookOut(ctx, w)
	if err != nil {
		return nil, err
	}
	return &webhookOutput{Status: http.StatusOK, Body: out}, nil
}

type webhookPatchInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body struct {
		URL         *string   `json:"url,omitempty" minLength:"8" maxLength:"2000"`
		Kinds       *[]string `json:"kinds,omitempty" maxItems:"20" doc:"Empty: every kind."`
		AccountIDs  *[]int64  `json:"account_ids,omitempty" maxItems:"1000" doc:"An account added starts at its newest change."`
		AllAccounts *bool     `json:"all_accounts,omitempty"`
		Enabled     *bool     `json:"enabled,omitempty" doc:"false stops deliveries; true resumes them where they stopped (nothing is skipped)."`
	}
}

func (s *Server) patchWebhook(ctx context.Context, in *webhookPatchInput) (*webhookOutput, error) {
	w, err := s.ownWebhook(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	b := in.Body
	if b.URL != nil {
		url := strings.TrimSpace(*b.URL)
		if err := s.checkWebhookURL(ctx, url); err != nil {
			return nil, err
		}
		w.URL = url
	}
	if b.Kinds != nil {
		if w.Kinds, err = parseKinds(*b.Kinds); err != nil {
			return nil, err
		}
	}
	if b.AllAccounts != nil {
		w.AllAccounts = *b.AllAccounts
	}
	if b.AccountIDs != nil {
		if err := s.checkAccounts(ctx, w.UserID, *b.AccountIDs); err != nil {
			return nil, err
		}
		w.AccountIDs = *b.AccountIDs
	}
	if !w.AllAccounts && len(w.AccountIDs) == 0 {
		return nil, huma.Error422UnprocessableEntity("an endpoint needs accounts: send account_ids, or \"all_accounts\": true")
	}
	if b.Enabled != nil && *b.Enabled != w.Enabled {
		w.Enabled = *b.Enabled
		w.DisabledReason = ""
		if !w.Enabled {
			w.DisabledReason = "disabled by " + userFrom(ctx).Email
		}
	}
	w, err = s.store.UpdateWebhook(ctx, w)
	if errors.Is(err, store.ErrNotFound) {
		return nil, webhookNotFound(in.ID)
	}
	if err != nil {
		return nil, err
	}
	if w.Enabled {
		s.cfg.Webhooks.Wake()
	}
	out, err := s.webhookOut(ctx, w)
	if err != nil {
		return nil, err
	}
	return &webhookOutput{Status: http.StatusOK, Body: out}, nil
}

func (s *Server) deleteWebhook(ctx context.Context, in *webhookIDInput) (*struct{}, error) {
	if _, err := s.ownWebhook(ctx, in.ID); err != nil {
		return nil, err
	}
	if err := s.store.DeleteWebhook(ctx, in.ID); errors.Is(err, store.ErrNotFound) {
		return nil, webhookNotFound(in.ID)
	} else if err != nil {
		return nil, err
	}
	s.log.Info("httpapi: webhook deleted", "webhook", in.ID, "by", userFrom(ctx).ID)
	return nil, nil
}

// rotateSecret replaces the signing secret; the answer carries the new one, once. Deliveries
// already in flight were signed with the old one.
func (s *Server) rotateSecret(ctx context.Context, in *webhookIDInput) (*webhookOutput, error) {
	w, err := s.ownWebhook(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	plain := webhook.NewSecret()
	w.SecretEnc = s.cfg.Box.Seal([]byte(plain), secret.WebhookContext(w.ID))
	if w, err = s.store.UpdateWebhook(ctx, w); err != nil {
		return nil, err
	}
	out, err := s.webhookOut(ctx, w)
	if err != nil {
		return nil, err
	}
	out.Secret = plain
	return &webhookOutput{Status: http.StatusOK, Body: out}, nil
}

type deliveriesInput struct {
	ID    int64 `path:"id" minimum:"1"`
	Limit int   `query:"limit" minimum:"1" maximum:"100" default:"50" doc:"How many of the newest attempts."`
}

type deliveriesOutput struct{ Body []AttemptJSON }

func (s *Server) webhookDeliveries(ctx context.Context, in *deliveriesInput) (*deliveriesOutput, error) {
	if _, err := s.ownWebhook(ctx, in.ID); err != nil {
		return nil, err
	}
	as, err := s.store.WebhookAttempts(ctx, in.ID, in.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]AttemptJSON, 0, len(as))
	for _, a := range as {
		out = append(out, attemptJSON(a))
	}
	return &deliveriesOutput{Body: out}, nil
}

type attemptOutput struct{ Body AttemptJSON }

// testWebhook sends a test event now and answers with what the receiver said (a receiver's
// failure is a 200 describing it: the test itself worked). A disabled endpoint is tested too.
func (s *Server) testWebhook(ctx context.Context, in *webhookIDInput) (*attemptOutput, error) {
	w, err := s.ownWebhook(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.Webhooks.SendTest(ctx, w)
	if err != nil {
		return nil, err
	}
	return &attemptOutput{Body: attemptJSON(a)}, nil
}
