package metrics

import (
	"context"
	"errors"
	"mailsync/internal/changes"
	"mailsync/internal/task"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeSource struct {
	counts map[task.State]int
	active []task.Task
	err    error
}

func (f fakeSource) TaskCounts(context.Context) (map[task.State]int, error) {
	return f.counts, f.err
}
func (f fakeSource) ActiveTasks(context.Context) ([]task.Task, error) { return f.active, f.err }

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestRegistry(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	src := fakeSource{
		counts: map[task.State]int{task.Running: 2, task.Succeeded: 5},
		active: []task.Task{
			{State: task.Running, HeartbeatAt: now.Add(-7 * time.Second), ObservedAt: now},
			{State: task.Running, HeartbeatAt: now.Add(-2 * time.Second), ObservedAt: now},
			{State: task.Queued, CreatedAt: now.Add(-time.Hour), ObservedAt: now},
		},
	}
	r := New(src)
	r.TaskFinished(task.Task{State: task.Succeeded, StartedAt: now, FinishedAt: now.Add(3 * time.Second)})
	r.TaskFinished(task.Task{State: task.Running}) // not finished: ignored
	r.MessagesFetched(10, 2048)
	r.IMAPError("auth")
	r.ZombiesReaped(2)
	r.ChangesWritten(changes.MessageCreated, 40)
	r.ChangesWritten(changes.MessageCreated, 2)
	r.ChangesWritten(changes.SyncSucceeded, 1)
	r.ChangesPruned(7)
	r.HTTPRequest("GET", "GET /api/sync/tasks/{id}", 200, time.Millisecond)
	out := scrape(t, r)
	for _, want := range []string{
		`mailsync_tasks{state="running"} 2`,
		`mailsync_tasks{state="succeeded"} 5`,
		`mailsync_tasks{state="failed"} 0`,
		`mailsync_oldest_heartbeat_age_seconds 7`,
		`mailsync_task_duration_seconds_count{state="succeeded"} 1`,
		`mailsync_task_duration_seconds_sum{state="succeeded"} 3`,
		`mailsync_messages_fetched_total 10`,
		`mailsync_bytes_fetched_total 2048`,
		`mailsync_imap_errors_total{class="auth"} 1`,
		`mailsync_zombie_tasks_reaped_total 2`,
		`mailsync_changes_written_total{kind="message.created"} 42`,
		`mailsync_changes_written_total{kind="sync.succeeded"} 1`,
		`mailsync_changes_written_total{kind="folder.renamed"} 0`,
		`mailsync_changes_pruned_total 7`,
		`mailsync_http_requests_total{code="200",method="GET",route="GET /api/sync/tasks/{id}"} 1`,
		`mailsync_task_scrape_error 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

func TestScrapeSurvivesDatabaseErrors(t *testing.T) {
	out := scrape(t, New(fakeSource{err: errors.New("down")}))
	if !strings.Contains(out, "mailsync_task_scrape_error 1") {
		t.Fatalf("scrape with the database down:\n%s", out)
	}
}

// TestInventedMethodsCountAsOther: a label value is a series kept for good, so a method nobody
// registered must not become one.
func TestInventedMethodsCountAsOther(t *testing.T) {
	r := New(fakeSource{})
	for _, m := range []string{"GET", "PATCH", "BREW", strings.Repeat("X", 50_000), "get"} {
		r.HTTPRequest(m, "unmatched", 404, time.Millisecond)
	}
	out := scrape(t, r)
	for _, want := range []string{
		`mailsync_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`mailsync_http_requests_total{code="404",method="PATCH",route="unmatched"} 1`,
		`mailsync_http_requests_total{code="404",method="other",route="unmatched"} 3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(out, "BREW") || strings.Contains(out, "XXXX") {
		t.Error("an invented method became a label value")
	}
}

// The webhook metrics: deliveries by outcome with the changes they carried, and the per-endpoint
// gauges read at scrape time (registered once, however often WatchWebhooks is called).
func TestWebhookMetrics(t *testing.T) {
	r := New(fakeSource{})
	r.WebhookDelivery("delivered", 100, 20*time.Millisecond)
	r.WebhookDelivery("delivered", 3, time.Millisecond)
	r.WebhookDelivery("failed", 100, 0)
	lags := func(context.Context) ([]WebhookLag, error) {
		return []WebhookLag{{ID: 7, Lag: 90 * time.Second, Behind: 40, Enabled: true}, {ID: 9, Enabled: false}}, nil
	}
	r.WatchWebhooks(lags)
	r.WatchWebhooks(lags)
	out := scrape(t, r)
	for _, want := range []string{
		`mailsync_webhook_deliveries_total{outcome="delivered"} 2`,
		`mailsync_webhook_deliveries_total{outcome="failed"} 1`,
		`mailsync_webhook_changes_total{outcome="delivered"} 103`,
		`mailsync_webhook_delivery_duration_seconds_count 2`,
		`mailsync_webhook_lag_seconds{webhook="7"} 90`,
		`mailsync_webhook_behind_changes{webhook="7"} 40`,
		`mailsync_webhook_enabled{webhook="7"} 1`,
		`mailsync_webhook_enabled{webhook="9"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
