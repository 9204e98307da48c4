// Package metrics is mailsync's Prometheus instrumentation, on a registry of its own (never the
// global default one). Components count through the methods of Registry; consumers declare the
// small interface of the methods they call.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailsync/internal/changes"
	"mailsync/internal/task"
)

// TaskSource is what the scrape-time task gauges read.
type TaskSource interface {
	TaskCounts(ctx context.Context) (map[task.State]int, error)
	ActiveTasks(ctx context.Context) ([]task.Task, error)
}

// Registry holds every mailsync metric.
type Registry struct {
	reg             *prometheus.Registry
	taskDuration    *prometheus.HistogramVec
	messagesFetched prometheus.Counter
	bytesFetched    prometheus.Counter
	imapErrors      *prometheus.CounterVec
	zombiesReaped   prometheus.Counter
	changesWritten  *prometheus.CounterVec
	changesPruned   prometheus.Counter
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	webhookPosts    *prometheus.CounterVec
	webhookChanges  *prometheus.CounterVec
	webhookLatency  prometheus.Histogram
	oauthRefreshes  *prometheus.CounterVec
	reauthRequired  prometheus.Counter
	actionsCreated  *prometheus.CounterVec
	actionsEnded    *prometheus.CounterVec
}

// New returns a Registry whose task gauges read src at every scrape (the database is the truth;
// gauges kept in memory would be wrong as soon as another instance changes a task).
func New(src TaskSource) *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailsync_task_duration_seconds",
			Help:    "How long finished sync tasks ran, from claim (or creation, if never claimed) to their end, by final state.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200},
		}, []string{"state"}),
		messagesFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailsync_messages_fetched_total", Help: "Messages downloaded from IMAP servers.",
		}),
		bytesFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailsync_bytes_fetched_total", Help: "Bytes of raw messages downloaded from IMAP servers.",
		}),
		imapErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailsync_imap_errors_total", Help: "IMAP errors, by class (auth, throttled, transient, permanent).",
		}, []string{"class"}),
		zombiesReaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailsync_zombie_tasks_reaped_total", Help: "Tasks whose worker went silent, re-queued or ended by a reaper.",
		}),
		changesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailsync_changes_written_total", Help: "Changes committed to the change log by this instance, by kind (message.created, folder.renamed, sync.failed, ...).",
		}, []string{"kind"}),
		changesPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailsync_changes_pruned_total", Help: "Changes removed from the change log by this instance's pruner, past the retention window.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailsync_http_requests_total", Help: "HTTP requests, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailsync_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern (SSE streams count their whole life).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		webhookPosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailsync_webhook_deliveries_total",
			Help: "Webhook POSTs (test events included), by outcome: delivered (2xx), failed (retried later), disabled (the endpoint was disabled).",
		}, []string{"outcome"}),
		webhookChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailsync_webhook_changes_total", Help: "Changes carried by webhook POSTs, by outcome (a change retried counts at every attempt).",
		}, []string{"outcome"}),
		webhookLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mailsync_webhook_delivery_duration_seconds",
			Help:    "How long webhook receivers took to answer (or to fail).",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
	}
	for _, k := range changes.Kinds {
		r.changesWritten.WithLabelValues(string(k)) // every kind shows from the start, at 0
	}
	r.oauthRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailsync_oauth_refreshes_total", Help: "OAuth2 access-token refreshes asked of providers, by result (ok, auth, transient, permanent).",
	}, []string{"result"})
	r.reauthRequired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mailsync_oauth_reauth_required_total", Help: "OAuth2 accounts put in the reauth_required state (their provider refused the refresh token).",
	})
	r.actionsCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailsync_actions_created_total", Help: "Actions on mail stored by this instance (an Idempotency-Key repeated makes none), by kind.",
	}, []string{"kind"})
	r.actionsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailsync_actions_ended_total", Help: "Actions on mail that reached a final state on this instance's tasks, by kind and state (done, failed, conflict, unknown).",
	}, []string{"kind", "state"})
	r.reg.MustRegister(r.oauthRefreshes, r.reauthRequired, r.actionsCreated, r.actionsEnded)
	r.reg.MustRegister(r.taskDuration, r.messagesFetched, r.bytesFetched, r.imapErrors, r.zombiesReaped,
		r.changesWritten, r.changesPruned, r.httpRequests, r.httpDuration, r.webhookPosts, r.webhookChanges, r.webhookLatency, newTaskCollector(src),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// TaskFinished records a task that reached a terminal state. Call it once per task, where the
// transition happened (the worker's Finish, a reap, a cancel of a queued task).
func (r *Registry) TaskFinished(t task.Task) {
	if t.State.Active() || t.FinishedAt.IsZero() {
		return
	}
	from := t.StartedAt
	if from.IsZero() {
		from = t.CreatedAt
	}
	r.taskDuration.WithLabelValues(string(t.State)).Observe(max(0, t.FinishedAt.Sub(from).Seconds()))
}

// MessagesFetched counts n downloaded messages of size bytes in all.
func (r *Registry) MessagesFetched(n int, bytes int64) {
	r.messagesFetched.Add(float64(n))
	r.bytesFetched.Add(float64(bytes))
}

// IMAPError counts one IMAP error of the class.
func (r *Registry) IMAPError(class string) { r.imapErrors.WithLabelValues(class).Inc() }

// OAuthRefresh counts one token refresh asked of a provider, by result.
func (r *Registry) OAuthRefresh(result string) { r.oauthRefreshes.WithLabelValues(result).Inc() }

// ActionCreated counts an action stored.
func (r *Registry) ActionCreated(kind string) { r.actionsCreated.WithLabelValues(kind).Inc() }

// ActionEnded counts an action that reached a final state.
func (r *Registry) ActionEnded(kind, state string) { r.actionsEnded.WithLabelValues(kind, state).Inc() }

// ReauthRequired counts one account put in the reauth_required state.
func (r *Registry) ReauthRequired() { r.reauthRequired.Inc() }

// ZombiesReaped counts n tasks a reaper changed.
func (r *Registry) ZombiesReaped(n int) { r.zombiesReaped.Add(float64(n)) }

// ChangesWritten counts n committed changes of kind. The kinds are a closed set
// (changes.Kinds), so the label stays small.
func (r *Registry) ChangesWritten(kind changes.Kind, n int) {
	r.changesWritten.WithLabelValues(string(kind)).Add(float64(n))
}

// ChangesPruned counts n changes a pruner removed.
func (r *Registry) ChangesPruned(n int) { r.changesPruned.Add(float64(n)) }

// HTTPRequest counts one request. route is the mux pattern ("GET /api/sync/tasks/{id}"), never
// the raw path, and a method outside the standard ones counts as "other", so the label set stays
// small whatever clients send: every label value is a new series, kept for the life of the process.
func (r *Registry) HTTPRequest(method, route string, code int, d time.Duration) {
	r.httpRequests.WithLabelValues(methodLabel(method), route, strconv.Itoa(code)).Inc()
	r.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// methodLabel is method when it is one of RFC 9110's methods or PATCH, else "other". A client
// may send any token as a method (the Go server accepts kilobytes of it).
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// WebhookDelivery counts one webhook POST by outcome, with the changes it carried.
func (r *Registry) WebhookDelivery(outcome string, changes int, latency time.Duration) {
	r.webhookPosts.WithLabelValues(outcome).Inc()
	r.webhookChanges.WithLabelValues(outcome).Add(float64(changes))
	if latency > 0 {
		r.webhookLatency.Observe(latency.Seconds())
	}
}

// WebhookLag is one endpoint's delivery lag as the scrape-time gauge reads it.
type WebhookLag struct {
	ID      int64
	Lag     time.Duration // age of its oldest undelivered change; 0: caught up
	Behind  int64         // changes after its cursors
	Enabled bool
}

// WatchWebhooks registers the per-endpoint lag gauges, read from lags at every scrape. Only the
// first call on a registry counts (instances sharing one registry read the same database).
func (r *Registry) WatchWebhooks(lags func(ctx context.Context) ([]WebhookLag, error)) {
	_ = r.reg.Register(&webhookCollector{lags: lags,
		lagDesc: prometheus.NewDesc("mailsync_webhook_lag_seconds",
			"Age of the oldest change a webhook endpoint has not acknowledged, by the database clock (0: caught up).", []string{"webhook"}, nil),
		behindDesc: prometheus.NewDesc("mailsync_webhook_behind_changes",
			"Changes after a webhook endpoint's cursors.", []string{"webhook"}, nil),
		enabledDesc: prometheus.NewDesc("mailsync_webhook_enabled",
			"1 while a webhook endpoint is enabled, 0 once it was disabled (see its reason in the API).", []string{"webhook"}, nil),
	})
}

type webhookCollector struct {
	lags                             func(ctx context.Context) ([]WebhookLag, error)
	lagDesc, behindDesc, enabledDesc *prometheus.Desc
}

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagDesc
	ch <- c.behindDesc
	ch <- c.enabledDesc
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	lags, err := c.lags(ctx)
	if err != nil {
		return // the task collector's scrape error already says the database does not answer
	}
	for _, l := range lags {
		id := strconv.FormatInt(l.ID, 10)
		enabled := 0.0
		if l.Enabled {
			enabled = 1
		}
		ch <- prometheus.MustNewConstMetric(c.lagDesc, prometheus.GaugeValue, l.Lag.Seconds(), id)
		ch <- prometheus.MustNewConstMetric(c.behindDesc, prometheus.GaugeValue, float64(l.Behind), id)
		ch <- prometheus.MustNewConstMetric(c.enabledDesc, prometheus.GaugeValue, enabled, id)
	}
}

// taskCollector reads the task gauges from the database at scrape time.
type taskCollector struct {
	src                                      TaskSource
	tasksDesc, oldestHeartbeatDesc, errsDesc *prometheus.Desc
}

func newTaskCollector(src TaskSource) *taskCollector {
	return &taskCollector{
		src:       src,
		tasksDesc: prometheus.NewDesc("mailsync_tasks", "Sync tasks in the database, by state.", []string{"state"}, nil),
		oldestHeartbeatDesc: prometheus.NewDesc("mailsync_oldest_heartbeat_age_seconds",
			"Age of the oldest heartbeat among running tasks, by the database clock (0 when none runs).", nil, nil),
		errsDesc: prometheus.NewDesc("mailsync_task_scrape_error",
			"1 when the task gauges could not be read from the database at this scrape.", nil, nil),
	}
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasksDesc
	ch <- c.oldestHeartbeatDesc
	ch <- c.errsDesc
}

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	failed := 0.0
	counts, err := c.src.TaskCounts(ctx)
	if err != nil {
		failed = 1
	}
	for _, s := range task.States {
		if err == nil {
			ch <- prometheus.MustNewConstMetric(c.tasksDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}
	active, err := c.src.ActiveTasks(ctx)
	if err != nil {
		failed = 1
	} else {
		ch <- prometheus.MustNewConstMetric(c.oldestHeartbeatDesc, prometheus.GaugeValue, task.OldestHeartbeatAge(active).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.errsDesc, prometheus.GaugeValue, failed)
}
