package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mailsync/internal/changes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/webhook"
)

// The tests deliver to a real receiver in a process of its own: this test binary, re-executed
// with receiverEnv set, runs receiverMain instead of the tests. The receiver appends every request
// it answered 2xx to a log file (so a killed receiver loses nothing it acknowledged), and a
// /control request changes how it answers: fail the next N requests with a status, answer 410 or a
// redirect, or hold requests past the client's timeout.

const (
	receiverEnv  = "MAILSYNC_TEST_WEBHOOK_RECEIVER" // the address to listen on
	receiverLog  = "MAILSYNC_TEST_WEBHOOK_LOG"
	receiverMode = "MAILSYNC_TEST_WEBHOOK_MODE"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(receiverEnv); addr != "" {
		receiverMain(addr, os.Getenv(receiverLog), os.Getenv(receiverMode))
		return
	}
	os.Exit(m.Run())
}

// mode is how the receiver answers.
type mode struct {
	// FailNext requests are answered FailStatus (500 when zero).
	FailNext   int `json:"fail_next,omitempty"`
	FailStatus int `json:"fail_status,omitempty"`
	// HoldNext requests are answered only after Hold (longer than the client waits).
	HoldNext int           `json:"hold_next,omitempty"`
	Hold     time.Duration `json:"hold,omitempty"`
	// Status, when set, answers every request with it (410, 302, ...).
	Status int `json:"status,omitempty"`
	// Delay slows every request down (a busy receiver).
	Delay time.Duration `json:"delay,omitempty"`
}

// record is one acknowledged request in the receiver's log.
type record struct {
	Timestamp string          `json:"timestamp"`
	Signature string          `json:"signature"`
	Delivery  string          `json:"delivery"`
	Body      json.RawMessage `json:"body"`
}

func receiverMain(addr, logPath, initial string) {
	var (
		mu  sync.Mutex
		cur mode
	)
	if initial != "" {
		if err := json.Unmarshal([]byte(initial), &cur); err != nil {
			fmt.Fprintln(os.Stderr, "receiver: bad mode:", err)
			os.Exit(2)
		}
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /control", func(w http.ResponseWriter, r *http.Request) {
		var m mode
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		cur = m
		mu.Unlock()
	})
	mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mu.Lock()
		m := cur
		status := http.StatusOK
		hold := time.Duration(0)
		switch {
		case cur.Status != 0:
			status = cur.Status
		case cur.FailNext > 0:
			cur.FailNext--
			status = cmpOr(cur.FailStatus, http.StatusInternalServerError)
		case cur.HoldNext > 0:
			cur.HoldNext--
			hold = cur.Hold
		}
		mu.Unlock()
		time.Sleep(m.Delay + hold)
		if status/100 == 2 {
			line, _ := json.Marshal(record{Timestamp: r.Header.Get(webhook.HeaderTimestamp), Signature: r.Header.Get(webhook.HeaderSignature),
				Delivery: r.Header.Get(webhook.HeaderDelivery), Body: body})
			mu.Lock()
			_, _ = logFile.Write(append(line, '\n'))
			mu.Unlock()
		}
		if status/100 == 3 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "receiver says %d", status)
	})
	mux.HandleFunc("POST /elsewhere", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "receiver: a redirect was followed")
		os.Exit(3)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(2)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	_ = http.Serve(ln, mux)
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// receiver is a running receiver process.
type receiver struct {
	t    *testing.T
	addr string
	log  string
	cmd  *exec.Cmd
}

// startReceiver runs a receiver process on 127.0.0.1 (a free port), killed when the test ends.
func startReceiver(t *testing.T, m mode) *receiver {
	t.Helper()
	r := &receiver{t: t, addr: "127.0.0.1:0", log: filepath.Join(t.TempDir(), "received.jsonl")}
	r.start(m)
	t.Cleanup(r.kill)
	return r
}

func (r *receiver) start(m mode) {
	r.t.Helper()
	initial, _ := json.Marshal(m)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), receiverEnv+"="+r.addr, receiverLog+"="+r.log, receiverMode+"="+string(initial))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.t.Fatalf("the receiver did not start: %v", err)
	}
	r.addr = strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	r.cmd = cmd
}

// kill stops the receiver at once (SIGKILL); restart brings it back on the same port.
func (r *receiver) kill() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *receiver) restart(m mode) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", r.addr)
		if err == nil {
			ln.Close()
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the receiver's port %s stays taken: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.start(m)
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) set(m mode) {
	r.t.Helper()
	data, _ := json.Marshal(m)
	resp, err := http.Post("http://"+r.addr+"/control", "application/json", bytes.NewReader(data))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
}

// received reads the receiver's log.
func (r *receiver) received() []record {
	r.t.Helper()
	data, err := os.ReadFile(r.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	var out []record
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec record
		if err := json.Unmarshal(line, &rec); err != nil {
			continue // a line cut by a SIGKILL
		}
		out = append(out, rec)
	}
	return out
}

// check verifies what the receiver holds against want (account → the seqs it must have, in
// order): every change there, none skipped ahead of one missing, duplicates only as the same
// change under the same id, and every request signed with secret. It returns the problems.
func check(recs []record, secret string, want map[int64][]int64) []string {
	var problems []string
	seen := map[string]string{} // id → the change's JSON
	got := map[int64][]int64{}  // first arrivals, in order
	for _, rec := range recs {
		if err := webhook.Verify(secret, rec.Timestamp, rec.Signature, rec.Body, time.Now(), 10*time.Minute); err != nil {
			problems = append(problems, fmt.Sprintf("delivery %s: %v", rec.Delivery, err))
		}
		var b struct {
			Changes []json.RawMessage `json:"changes"`
		}
		if err := json.Unmarshal(rec.Body, &b); err != nil {
			problems = append(problems, fmt.Sprintf("delivery %s: %v", rec.Delivery, err))
			continue
		}
		for _, raw := range b.Changes {
			var c webhook.Change
			if err := json.Unmarshal(raw, &c); err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if c.ID != changes.ID(c.AccountID, c.Seq) {
				problems = append(problems, fmt.Sprintf("change %d:%d has id %q", c.AccountID, c.Seq, c.ID))
			}
			if prev, dup := seen[c.ID]; dup {
				if prev != string(raw) {
					problems = append(problems, fmt.Sprintf("change %s arrived twice with different contents", c.ID))
				}
				continue
			}
			seen[c.ID] = string(raw)
			got[c.AccountID] = append(got[c.AccountID], c.Seq)
		}
	}
	for acct, seqs := range want {
		if fmt.Sprint(got[acct]) != fmt.Sprint(seqs) {
			problems = append(problems, fmt.Sprintf("account %d: received %s, want %s", acct, brief(got[acct]), brief(seqs)))
		}
	}
	return problems
}

// brief shows a long list of numbers by its ends and length.
func brief(s []int64) string {
	if len(s) <= 12 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v … %v (%d)", s[:6], s[len(s)-6:], len(s))
}

// waitFor polls cond until it holds or the time runs out.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, within)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
