package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
	"mailsync/internal/webhook"
)

// hookReceiver is a webhook receiver in the test process: it outlives the servers the test
// kills. It answers every request after delay and keeps what it acknowledged.
type hookReceiver struct {
	mu       sync.Mutex
	secret   string
	requests int
	badSigs  []string
	ids      map[string]string // change id → its JSON
	order    map[int64][]int64 // first arrivals per account
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	time.Sleep(15 * time.Millisecond) // a receiver that takes its time, so a kill lands mid-delivery
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if err := webhook.Verify(h.secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body,
		time.Now(), time.Minute); err != nil {
		h.badSigs = append(h.badSigs, err.Error())
	}
	var b struct{ Changes []json.RawMessage }
	_ = json.Unmarshal(body, &b)
	for _, raw := range b.Changes {
		var c webhook.Change
		_ = json.Unmarshal(raw, &c)
		if prev, dup := h.ids[c.ID]; dup {
			if prev != string(raw) {
				h.badSigs = append(h.badSigs, "change "+c.ID+" arrived twice with different contents")
			}
			continue
		}
		h.ids[c.ID] = string(raw)
		h.order[c.AccountID] = append(h.order[c.AccountID], c.Seq)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) received() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

// postJSON sends body to a server as the token's user and decodes the answer into out.
func postJSON(t *testing.T, c apiClient, path string, body, out any) int {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestWebhookDeliverySurvivesSIGKILL runs real `mailsync serve` processes. Without
// --webhook-allow-private a loopback receiver is refused. With it, a server delivering a backlog
// of two accounts is SIGKILLed mid-delivery; the next server takes the pairs over once the dead
// one's leases run out, and the receiver ends with every change once at least, in order per
// account, duplicates only of the same change, every request signed.
func TestWebhookDeliverySurvivesSIGKILL(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		ctx := context.Background()
		dsn := storetest.DSN(t, d)
		common := []string{"--db", dsn, "--data-dir", t.TempDir()}
		if code, _, stderr := mailsyncIn(t, "a-long-password\n", append(append([]string{}, common...),
			"user", "add", "hook@example.test", "--password-stdin")...); code != 0 {
			t.Fatal(stderr)
		}
		code, out, stderr := mailsync(t, append(append([]string{}, common...), "token", "create", "hook@example.test")...)
		if code != 0 {
			t.Fatal(stderr)
		}
		token := strings.TrimSpace(out)

		rcv := &hookReceiver{ids: map[string]string{}, order: map[int64][]int64{}}
		ts := httptest.NewServer(rcv)
		defer ts.Close()

		addr := freeAddr(t)
		api := apiClient{base: "http://" + addr, token: token}
		strict := startServer(t, append(append([]string{}, common...), "serve", "--addr", addr)...)
		api.waitReady(t)
		if code := postJSON(t, api, "/api/webhooks", map[string]any{"url": ts.URL + "/hook", "all_accounts": true}, nil); code != http.StatusUnprocessableEntity {
			t.Fatalf("a loopback receiver without --webhook-allow-private: %d, want 422", code)
		}
		_ = strict.Process.Kill()
		_ = strict.Wait()

		// Two accounts (the first server made the server key); their backlog is written while no
		// server runs.
		s := storetest.OpenDSN(t, dsn, false)
		u, err := s.UserByEmail(ctx, "hook@example.test")
		if err != nil {
			t.Fatal(err)
		}
		tasks, err := task.NewManager(s, instancetest.Lifecycle())
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64]int64{}
		var accounts []int64
		for i := range 2 {
			a, err := s.CreateAccount(ctx, store.Account{UserID: u.ID, Name: fmt.Sprint("mail", i), IMAPHost: "127.0.0.1",
				IMAPPort: 1, TLSMode: "none", Login: "x", SecretEnc: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			accounts = append(accounts, a.ID)
			want[a.ID] = 401 // folder.created, then 400 messages
		}
		total := 802

		serve := append(append([]string{}, common...), "serve", "--addr", addr, "--webhook-allow-private",
			"--webhook-batch", "10", "--webhook-poll", "100ms", "--webhook-timeout", "1s", "--webhook-retry-base", "100ms")
		// The endpoint starts at the accounts' heads, so it is made before the backlog.
		setup := startServer(t, serve...)
		api.waitReady(t)
		var created struct {
			ID     int64  `json:"id"`
			Secret string `json:"secret"`
		}
		if code := postJSON(t, api, "/api/webhooks", map[string]any{"url": ts.URL + "/hook", "all_accounts": true}, &created); code != http.StatusCreated {
			t.Fatalf("create webhook: %d", code)
		}
		rcv.mu.Lock()
		rcv.secret = created.Secret
		rcv.mu.Unlock()
		_ = setup.Process.Signal(syscall.SIGTERM)
		_ = setup.Wait()

		// The backlog: 400 changes on each account, written the way syncs write them.
		for _, id := range accounts {
			w := storetest.NewChangeWriter(t, s, tasks, id, "INBOX")
			for range 20 {
				if _, err := w.Write(ctx, 20); err != nil {
					t.Fatal(err)
				}
			}
		}

		first := startServer(t, serve...)
		deadline := time.Now().Add(30 * time.Second)
		for rcv.received() < total/3 {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d changes delivered before the kill", rcv.received(), total)
			}
			time.Sleep(5 * time.Millisecond)
		}
		_ = first.Process.Kill()
		_ = first.Wait()
		atKill := rcv.received()
		if atKill >= total {
			t.Fatal("everything was delivered before the kill: make the backlog bigger")
		}

		startServer(t, serve...)
		deadline = time.Now().Add(60 * time.Second)
		for rcv.received() < total {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d changes delivered after the restart (%d at the kill)", rcv.received(), total, atKill)
			}
			time.Sleep(20 * time.Millisecond)
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if len(rcv.badSigs) > 0 {
			t.Fatalf("bad deliveries: %v", rcv.badSigs)
		}
		for acct, n := range want {
			got := rcv.order[acct]
			if int64(len(got)) != n {
				t.Fatalf("account %d: %d changes, want %d", acct, len(got), n)
			}
			for i, seq := range got {
				if seq != int64(i+1) {
					t.Fatalf("account %d: change %d arrived as number %d: out of order", acct, seq, i+1)
				}
			}
		}
		t.Logf("%d changes, %d requests, %d delivered before the SIGKILL", total, rcv.requests, atKill)
	})
}
