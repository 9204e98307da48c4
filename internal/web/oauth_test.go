package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailsync/internal/auth"
	"mailsync/internal/httpapi"
	"mailsync/internal/imaptest"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/mailgen"
	"mailsync/internal/metrics"
	"mailsync/internal/oauth"
	"mailsync/internal/oauthtest"
	"mailsync/internal/secret"
	"mailsync/internal/store/storetest"
	"mailsync/internal/syncer"
	"mailsync/internal/task"
)

// oauthStack is a server as serve builds it with one OAuth2 provider, the test provider, whose
// mailboxes live in a Dovecot validating its tokens; its log is kept, at debug level.
func oauthStack(t *testing.T, prov *oauthtest.Provider, d *imaptest.Dovecot, dir string) (*stack, *instancetest.LogBuffer) {
	t.Helper()
	s := storetest.OpenDSN(t, "sqlite:"+filepath.Join(dir, "mailsync.db"), true)
	logs := &instancetest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	key := bytes.Repeat([]byte{5}, secret.KeySize)
	box, err := secret.New(key)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := oauth.New(context.Background(), nil, oauth.Provider{Name: "test", Label: "Test Mail", ClientID: prov.ClientID,
		ClientSecret: prov.ClientSecret, Issuer: prov.URL(), IMAPHost: d.Host(), IMAPPort: d.Port(), IMAPTLS: "none"})
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New(s)
	tokens := oauth.NewTokens(s, box, ps, oauth.Options{Logger: log, Refreshed: reg.OAuthRefresh, ReauthRequired: reg.ReauthRequired})
	engine := syncer.New(s, box, syncer.Options{Tokens: tokens, Logger: log})
	c := lifecycle()
	c.HeartbeatInterval, c.HeartbeatTimeout, c.SelfFence = 300*time.Millisecond, 10*time.Second, 6*time.Second
	in, err := instance.New(instance.Config{
		Store: s, Key: key, Lifecycle: c, Login: engine, Body: engine.Run, Log: log, Metrics: reg,
		Workers: 2, WorkerPoll: 50 * time.Millisecond, ProgressEvery: 20 * time.Millisecond, ShutdownGrace: time.Second,
		NoReaper: true, SessionTTL: time.Hour,
		API: httpapi.Config{Version: "test", PasswordParams: instancetest.CheapParams, OAuth: tokens,
			PollInterval: 100 * time.Millisecond, MinEventInterval: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(in.Handler())
	ts.Config.RegisterOnShutdown(in.API.Shutdown)
	ts.Start()
	t.Cleanup(func() {
		in.API.Shutdown()
		ts.Close()
	})
	hash, err := auth.HashPassword(userPassword, instancetest.CheapParams)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(context.Background(), userEmail, hash, true)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{t: t, in: in, store: s, tasks: in.Tasks, box: in.Box, bus: in.Bus, url: ts.URL, user: u}
	st.startWorker()
	return st, logs
}

// TestBrowserOAuthSignIn adds an account in Chromium through the test provider's consent page,
// syncs it and sees its messages counted; refuses forged callbacks (an unknown state; a code
// issued without this flow's PKCE challenge); then revokes the authorization, sees the card
// ask to sign in again, signs in again and sees the sync resume. No token the provider issued
// is in the API's answers, the metrics, the log or the SQLite files.
func TestBrowserOAuthSignIn(t *testing.T) {
	browser := newBrowser(t)
	prov := oauthtest.Start(t)
	d := imaptest.StartDovecot(t, imaptest.WithOAuth2(prov.IntrospectionURL()))
	u := d.AddUser(t, "heidi@example.test", "unused")
	const messages = 400
	d.WriteMailgen(t, u, mailgen.Options{Seed: 3, Messages: messages})
	serverCounts(t, d, u)
	dir := t.TempDir()
	st, logs := oauthStack(t, prov, d, dir)
	p := newPage(t, browser, st.url)
	p.login()

	// Add the account with the provider.
	p.do(chromedp.Click(chromedp.CSS(`a[href="#/accounts/new"]`)), chromedp.WaitVisible(chromedp.CSS(`button[data-provider=test]`)))
	if label := eval[string](p, `document.querySelector('button[data-provider=test]').textContent`); label != "Add Test Mail account" {
		t.Errorf("provider button says %q", label)
	}
	p.do(chromedp.SetValue(chromedp.CSS(`[name=oauth_name]`), "Heidi"),
		chromedp.SetValue(chromedp.CSS(`[name=oauth_login]`), "heidi@example.test"),
		chromedp.Click(chromedp.CSS(`button[data-provider=test]`)),
		chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	if hint := eval[string](p, `document.querySelector('#username').value`); hint != "heidi@example.test" {
		t.Errorf("the consent page's account is %q: the login hint was not passed", hint)
	}
	p.do(chromedp.Click(chromedp.CSS(`#approve`)))
	p.waitAcross("the added account", `document.querySelector('[data-field=oauth-outcome]')?.textContent.includes('was added')`, 20*time.Second)
	accts := st.accounts()
	if len(accts) != 1 || !accts[0].IsOAuth2() || accts[0].Login != "heidi@example.test" || accts[0].OAuthProvider != "test" {
		t.Fatalf("accounts after the sign-in: %+v", accts)
	}
	a := accts[0]
	p.do(chromedp.Click(chromedp.CSS(card(a.ID) + ` [data-action=sync]`)))
	p.waitFor("the sync's end", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'succeeded'`, card(a.ID)), 60*time.Second)
	if n := p.stat(a.ID, "new"); n != messages {
		t.Errorf("the card says %d new messages, want %d", n, messages)
	}

	// Forged callbacks change nothing.
	p.do(chromedp.Navigate(st.url + "/oauth/callback?state=forged&code=whatever"))
	p.waitAcross("the refusal of an unknown state", `document.querySelector('[data-field=oauth-outcome]')?.textContent.includes('cannot be completed')`, 10*time.Second)
	startURL := evalAsync[string](p, `fetch('/api/oauth/start', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({provider: 'test', name: 'Forged', login_hint: 'heidi@example.test'})}).then((r) => r.json()).then((j) => j.url)`)
	start, err := url.Parse(startURL)
	if err != nil || start.Query().Get("code_challenge") == "" || start.Query().Get("code_challenge_method") != "S256" {
		t.Fatalf("authorization URL %q: no S256 PKCE challenge", startURL)
	}
	// The attacker's code: consented at the provider with a challenge of their own.
	form := start.Query()
	form.Set("code_challenge", "attackers-own-challenge-attackers-own-challenge")
	form.Set("username", "heidi@example.test")
	form.Set("decision", "approve")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.PostForm(prov.AuthURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	forgedCode, _ := url.Parse(resp.Header.Get("Location"))
	p.do(chromedp.Navigate(st.url + "/oauth/callback?" + url.Values{"state": {start.Query().Get("state")}, "code": {forgedCode.Query().Get("code")}}.Encode()))
	p.waitAcross("the refusal of a code without this flow's PKCE verifier", `document.querySelector('[data-field=oauth-outcome]')?.textContent.includes('did not accept')`, 10*time.Second)
	// The state was one-time: the same callback again is refused as unknown.
	p.do(chromedp.Navigate(st.url + "/oauth/callback?" + url.Values{"state": {start.Query().Get("state")}, "code": {"x"}}.Encode()))
	p.waitAcross("the refusal of a used state", `document.querySelector('[data-field=oauth-outcome]')?.textContent.includes('cannot be completed')`, 10*time.Second)
	if n := len(st.accounts()); n != 1 {
		t.Fatalf("%d accounts after forged callbacks, want 1", n)
	}

	// Revoked at the provider: the next sync fails, the card asks to sign in again.
	prov.Revoke("heidi@example.test")
	tk, _, err := st.tasks.Start(context.Background(), a.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	tk = waitTask(t, st.tasks, tk.ID)
	if tk.State != task.Failed || !strings.Contains(tk.Error, "auth error") {
		t.Fatalf("sync after revocation: %s %q", tk.State, tk.Error)
	}
	p.do(chromedp.Navigate(st.url + "/#/accounts"))
	p.waitFor("Sign in again", fmt.Sprintf(`!document.querySelector('%s [data-action=reauth]').hidden`, card(a.ID)), 10*time.Second)
	if !eval[bool](p, fmt.Sprintf(`document.querySelector('%s [data-action=sync]').disabled`, card(a.ID))) {
		t.Error("Sync now is enabled on a reauth_required account")
	}
	if m := apiGet(t, p, st.url+"/metrics", "GET").body; !strings.Contains(m, "mailsync_oauth_reauth_required_total 1") ||
		!strings.Contains(m, `mailsync_oauth_refreshes_total{result="auth"} 1`) {
		t.Errorf("metrics do not count the reauth_required account:\n%s", grepLines(m, "mailsync_oauth"))
	}
	if h := apiGet(t, p, st.url+"/api/health/sync", "GET").body; !strings.Contains(h, `"sync:reauthRequired":[{"componentType":"component","observedValue":1,"status":"warn"`) {
		t.Errorf("health/sync does not warn of the reauth_required account: %s", h)
	}
	resp2 := apiGet(t, p, st.url+fmt.Sprintf("/api/accounts/%d/sync", a.ID), "POST")
	if resp2.status != http.StatusConflict || !strings.Contains(resp2.body, "sign in again") {
		t.Errorf("Sync now on a reauth_required account: %d %s", resp2.status, resp2.body)
	}
	p.do(chromedp.Click(chromedp.CSS(card(a.ID)+` [data-action=reauth]`)), chromedp.WaitVisible(chromedp.CSS(`#approve`)), chromedp.Click(chromedp.CSS(`#approve`)))
	p.waitAcross("the resumed account", `document.querySelector('[data-field=oauth-outcome]')?.textContent.includes('signed in again')`, 20*time.Second)
	back, err := st.store.Account(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if back.ReauthRequired() {
		t.Fatal("still reauth_required after signing in again")
	}
	p.waitFor("the resumed sync's end", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === 'succeeded'`, card(a.ID)), 60*time.Second)

	// No token anywhere it must not be.
	var places []struct{ name, text string }
	for _, path := range []string{"/api/accounts", fmt.Sprintf("/api/accounts/%d", a.ID), fmt.Sprintf("/api/accounts/%d/sync", a.ID), "/metrics", "/api/health/sync"} {
		places = append(places, struct{ name, text string }{path, apiGet(t, p, st.url+path, "GET").body})
	}
	places = append(places, struct{ name, text string }{"the log", logs.String()})
	for _, f := range []string{"mailsync.db", "mailsync.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && f == "mailsync.db" {
			t.Fatal(err)
		}
		places = append(places, struct{ name, text string }{f, string(b)})
	}
	issued := prov.Issued()
	if len(issued) < 4 {
		t.Fatalf("the provider issued only %d tokens", len(issued))
	}
	for _, pl := range places {
		for _, tok := range issued {
			if strings.Contains(pl.text, tok) {
				t.Errorf("%s holds a token the provider issued", pl.name)
				break
			}
		}
	}
}

// waitAcross is waitFor across navigations (the provider's redirects): a poll cut by one is
// started again on the new document.
func (p *page) waitAcross(what, expr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := chromedp.Run(p.ctx, chromedp.Poll[any](expr,
			chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(20*time.Millisecond)))
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "context") {
			p.t.Fatalf("browser: waiting %s for %s (%s): %v\npage text: %s", timeout, what, expr, err,
				eval[string](p, `document.body.innerText`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// evalAsync is eval of an expression whose value is a promise.
func evalAsync[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

type apiAnswer struct {
	status int
	body   string
}

// apiGet asks the API from the page, with its session.
func apiGet(t *testing.T, p *page, target, method string) apiAnswer {
	t.Helper()
	type answer struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	a := evalAsync[answer](p, fmt.Sprintf(`fetch(%q, {method: %q, headers: {'Content-Type': 'application/json'}, body: %s})
		.then(async (r) => ({status: r.status, body: await r.text()}))`, target, method, map[bool]string{true: "'{}'", false: "undefined"}[method == "POST"]))
	return apiAnswer{status: a.Status, body: a.Body}
}

func waitTask(t *testing.T, tasks *task.Manager, id string) task.Task {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		tk, err := tasks.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !tk.State.Active() {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s", id, tk.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
