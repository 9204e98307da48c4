package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"mailsync/internal/task"
)

// The operators' endpoints answer in the IETF health-check format
// (draft-inadarei-api-health-check): a status of pass, warn or fail, and named checks.

// Health is a health-check response.
type Health struct {
	Status      string                   `json:"status" enum:"pass,warn,fail"`
	Version     string                   `json:"version,omitempty"`
	Description string                   `json:"description,omitempty"`
	Checks      map[string][]HealthCheck `json:"checks"`
	// Reaped lists what a cleanup changed (POST /api/health/sync/cleanup only).
	Reaped []TaskJSON `json:"reaped,omitempty"`
	// Accounts is every account's state (GET /api/health/sync/detailed only).
	Accounts []AccountHealth `json:"accounts,omitempty"`
}

// ContentType makes huma label the response application/health+json.
func (Health) ContentType(string) string { return "application/health+json" }

// HealthCheck is one measurement.
type HealthCheck struct {
	ComponentType string    `json:"componentType,omitempty"`
	ObservedValue any       `json:"observedValue"`
	ObservedUnit  string    `json:"observedUnit,omitempty"`
	Status        string    `json:"status" enum:"pass,warn,fail"`
	Time          time.Time `json:"time"`
	Output        string    `json:"output,omitempty"`
}

// AccountHealth is one account in the detailed sync health.
type AccountHealth struct {
	ID       int64     `json:"id"`
	UserID   int64     `json:"user_id"`
	Name     string    `json:"name"`
	Host     string    `json:"imap_host"`
	Syncing  bool      `json:"syncing" doc:"It has a live task."`
	LastTask *TaskJSON `json:"last_task"`
}

type healthOutput struct {
	Status int
	Body   Health
}

func worst(statuses ...string) string {
	rank := map[string]int{"pass": 0, "warn": 1, "fail": 2}
	out := "pass"
	for _, s := range statuses {
		if rank[s] > rank[out] {
			out = s
		}
	}
	return out
}

func (s *Server) healthOutput(h Health) *healthOutput {
	h.Version = s.cfg.Version
	status := http.StatusOK
	if h.Status == "fail" {
		status = http.StatusServiceUnavailable
	}
	return &healthOutput{Status: status, Body: h}
}

// syncHealth sums up the sync tasks. A dead task (active, its worker silent past the timeout) is
// a warning: a reaper or the next Start will replace it. One dead for longer than the reapers
// should have needed is a failure: no reaper is running. A live task whose IMAP server has sent
// nothing for the stall threshold (its worker says so in its heartbeats) is a warning too: the
// sync makes no progress, though nothing in mailsync is broken; the command timeout ends it.
func (s *Server) syncHealth(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	now := time.Now().UTC()
	active, err := s.store.ActiveTasks(ctx)
	if err != nil {
		s.log.Error("httpapi: sync health", "err", err)
		return s.healthOutput(Health{Status: "fail", Checks: map[string][]HealthCheck{
			"database:responseTime": {{ComponentType: "datastore", ObservedValue: nil, Status: "fail", Time: now, Output: "the database does not answer"}},
		}}), nil
	}
	cfg := s.tasks.Config()
	var (
		dead         int
		deadState    = "pass"
		waiting      int
		waitingState = "pass"
		longestWait  time.Duration
	)
	for _, t := range active {
		if s.tasks.Live(t) {
			if task.Stalled(t) {
				waiting++
				waitingState = "warn"
				longestWait = max(longestWait, t.ObservedAt.Sub(t.StalledSince))
			}
			continue
		}
		dead++
		deadState = worst(deadState, "warn")
		since := t.HeartbeatAt
		if since.IsZero() {
			since = t.CreatedAt
		}
		limit := cfg.HeartbeatTimeout + 2*cfg.ReapInterval
		if t.State == "queued" {
			limit = cfg.QueuedTimeout + 2*cfg.ReapInterval
		}
		if t.ObservedAt.Sub(since) > limit {
			deadState = "fail"
		}
	}
	oldest := task.OldestHeartbeatAge(active)
	oldestState := "pass"
	if oldest > cfg.HeartbeatTimeout {
		oldestState = "warn"
	}
	// Accounts waiting for their owner to sign in again sync no more: a warning until they do.
	reauth, err := s.store.ReauthRequired(ctx, 0)
	if err != nil {
		return nil, err
	}
	reauthState, reauthOut := "pass", ""
	if reauth > 0 {
		reauthState = "warn"
		reauthOut = "OAuth2 accounts whose provider refused their authorization: they do not sync until their owner signs in again"
	}
	// Everyone may read this endpoint: it names no account, folder or server.
	waitingOn := ""
	if waiting > 0 {
		waitingOn = fmt.Sprintf("running syncs whose IMAP server has sent nothing for the stall threshold; the longest for %s",
			longestWait.Round(time.Second))
	}
	hooks, err := s.webhookHealth(ctx, now)
	if err != nil {
		s.log.Error("httpapi: webhook health", "err", err)
		unknown := HealthCheck{ComponentType: "component", ObservedValue: nil, Status: "warn", Time: now, Output: "cannot read the webhook endpoints"}
		hooks = [2]HealthCheck{unknown, unknown}
	}
	h := Health{Status: worst(deadState, oldestState, waitingState, reauthState, hooks[0].Status, hooks[1].Status), Description: "sync tasks", Checks: map[string][]HealthCheck{
		"webhooks:maxLag":         {hooks[0]},
		"webhooks:disabled":       {hooks[1]},
		"sync:reauthRequired":     {{ComponentType: "component", ObservedValue: reauth, Status: reauthState, Time: now, Output: reauthOut}},
		"sync:waitingOnServer":    {{ComponentType: "component", ObservedValue: waiting, Status: waitingState, Time: now, Output: waitingOn}},
		"sync:active":             {{ComponentType: "component", ObservedValue: len(active), Status: "pass", Time: now}},
		"sync:dead":               {{ComponentType: "component", ObservedValue: dead, Status: deadState, Time: now}},
		"sync:oldestHeartbeatAge": {{ComponentType: "component", ObservedValue: oldest.Seconds(), ObservedUnit: "s", Status: oldestState, Time: now}},
		"sync:heartbeatTimeout":   {{ComponentType: "component", ObservedValue: cfg.HeartbeatTimeout.Seconds(), ObservedUnit: "s", Status: "pass", Time: now}},
	}}
	return s.healthOutput(h), nil
}

// webhookHealth is the webhook endpoints' part of the sync health: the largest delivery lag (a
// warning past WebhookLagWarn) and how many endpoints are disabled (a warning: their owners have
// something to fix). Like the rest of the sync health it names no endpoint, user or URL.
func (s *Server) webhookHealth(ctx context.Context, now time.Time) ([2]HealthCheck, error) {
	hooks, err := s.store.Webhooks(ctx, 0)
	if err != nil {
		return [2]HealthCheck{}, err
	}
	states, err := s.store.WebhookStates(ctx, 0)
	if err != nil {
		return [2]HealthCheck{}, err
	}
	var (
		maxLag          time.Duration
		behind, off     int
		lagState, state = "pass", "pass"
		lagOut, offOut  string
	)
	for _, w := range hooks {
		if !w.Enabled {
			off++
			continue
		}
		st := states[w.ID]
		if st.OldestUndelivered.IsZero() {
			continue
		}
		lag := st.Now.Sub(st.OldestUndelivered)
		maxLag = max(maxLag, lag)
		if lag > s.cfg.WebhookLagWarn {
			behind++
		}
	}
	if behind > 0 {
		lagState = "warn"
		lagOut = fmt.Sprintf("%d enabled webhook endpoint(s) more than %s behind", behind, s.cfg.WebhookLagWarn)
	}
	if off > 0 {
		state = "warn"
		offOut = fmt.Sprintf("%d webhook endpoint(s) disabled: their owners see why in the Webhooks page", off)
	}
	return [2]HealthCheck{
		{ComponentType: "component", ObservedValue: maxLag.Seconds(), ObservedUnit: "s", Status: lagState, Time: now, Output: lagOut},
		{ComponentType: "component", ObservedValue: off, Status: state, Time: now, Output: offOut},
	}, nil
}

// cleanup runs the reaper now and lists the tasks it changed: the operator's one-click repair.
func (s *Server) cleanup(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	reaped, err := s.tasks.Reap(ctx)
	if err != nil {
		return nil, err
	}
	s.cfg.Metrics.ZombiesReaped(len(reaped))
	h := Health{Status: "pass", Description: "reaped every dead task", Reaped: []TaskJSON{}, Checks: map[string][]HealthCheck{
		"sync:reaped": {{ComponentType: "component", ObservedValue: len(reaped), Status: "pass", Time: time.Now().UTC()}},
	}}
	for _, t := range reaped {
		if !t.State.Active() {
			s.cfg.Metrics.TaskFinished(t)
		}
		h.Reaped = append(h.Reaped, s.taskJSON(t))
	}
	if len(reaped) > 0 {
		s.log.Info("httpapi: cleanup reaped dead tasks", "count", len(reaped), "by", userFrom(ctx).ID)
	}
	return s.healthOutput(h), nil
}

// syncDetailed shows every account of every user with its live or latest task.
func (s *Server) syncDetailed(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	accts, err := s.store.Accounts(ctx, 0)
	if err != nil {
		return nil, err
	}
	status := "pass"
	h := Health{Description: "every account's sync state", Accounts: []AccountHealth{}}
	dead := 0
	for _, a := range accts {
		last, err := s.lastTask(ctx, a.ID)
		if err != nil {
			return nil, err
		}
		ah := AccountHealth{ID: a.ID, UserID: a.UserID, Name: a.Name, Host: a.IMAPHost, LastTask: last}
		if last != nil {
			ah.Syncing = last.Live
			if (last.State == "queued" || last.State == "running") && !last.Live {
				dead++
				status = "warn"
			}
		}
		h.Accounts = append(h.Accounts, ah)
	}
	h.Status = status
	h.Checks = map[string][]HealthCheck{
		"sync:accounts": {{ComponentType: "component", ObservedValue: len(accts), Status: "pass", Time: time.Now().UTC()}},
		"sync:dead":     {{ComponentType: "component", ObservedValue: dead, Status: status, Time: time.Now().UTC()}},
	}
	return s.healthOutput(h), nil
}

// systemHealth reports the machine and the process: CPU, memory, the data directory's disk,
// goroutines, a database round trip, uptime and version.
func (s *Server) systemHealth(ctx context.Context, _ *struct{}) (*healthOutput, error) {
	now := time.Now().UTC()
	checks := map[string][]HealthCheck{}
	status := "pass"
	add := func(name, ctype string, value any, unit, st, output string) {
		checks[name] = append(checks[name], HealthCheck{ComponentType: ctype, ObservedValue: value, ObservedUnit: unit, Status: st, Time: now, Output: output})
		status = worst(status, st)
	}

	start := time.Now()
	pingErr := s.store.Ping(ctx)
	rtt := time.Since(start)
	if pingErr != nil {
		add("database:responseTime", "datastore", nil, "ms", "fail", "the database does not answer")
	} else {
		add("database:responseTime", "datastore", float64(rtt.Microseconds())/1000, "ms", "pass", "")
	}

	if pct, err := cpu.PercentWithContext(ctx, 0, false); err == nil && len(pct) == 1 {
		add("cpu:utilization", "system", pct[0], "percent", "pass", "")
	} else {
		add("cpu:utilization", "system", nil, "percent", "warn", "unavailable")
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		st := "pass"
		if vm.UsedPercent > 95 {
			st = "warn"
		}
		add("memory:utilization", "system", vm.UsedPercent, "percent", st, "")
	} else {
		add("memory:utilization", "system", nil, "percent", "warn", "unavailable")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	add("process:memory", "component", ms.Sys, "bytes", "pass", "")
	if s.cfg.DataDir != "" {
		if du, err := disk.UsageWithContext(ctx, s.cfg.DataDir); err == nil {
			st := "pass"
			switch {
			case du.UsedPercent > 98:
				st = "fail"
			case du.UsedPercent > 90:
				st = "warn"
			}
			add("disk:utilization", "system", du.UsedPercent, "percent", st, s.cfg.DataDir)
			add("disk:free", "system", du.Free, "bytes", st, s.cfg.DataDir)
		} else {
			add("disk:utilization", "system", nil, "percent", "warn", "unavailable: "+err.Error())
		}
	}
	add("process:goroutines", "component", runtime.NumGoroutine(), "", "pass", "")
	add("process:uptime", "component", time.Since(s.started).Seconds(), "s", "pass", "")
	return s.healthOutput(Health{Status: status, Description: "mailsync " + s.cfg.Version, Checks: checks}), nil
}

// livez answers while the process serves at all.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 503 while the database does not answer or the server is shutting down, so a
// load balancer sends requests elsewhere.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.shuttingDown() {
		writeProblem(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("httpapi: not ready", "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "the database does not answer")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ready\n"))
}
