package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"mailsync/internal/changes"
	"mailsync/internal/metrics"
	"mailsync/internal/secret"
	"mailsync/internal/store"
	"mailsync/internal/task"
)

// Config is a Deliverer's settings; zero values take the defaults in brackets.
type Config struct {
	// BatchSize is the most changes one POST carries [100].
	BatchSize int
	// Concurrency is how many (endpoint, account) pairs this instance delivers at once [4].
	Concurrency int
	// Poll is how often the store is asked for due pairs when no wakeup came [1 s]. Changes
	// committed on this instance wake it at once (Wake); those of other instances within Poll.
	Poll time.Duration
	// Lease is how long a claimed pair stays this deliverer's without a word; every acknowledged
	// batch extends it [2 min]. It must exceed the client's total timeout.
	Lease time.Duration
	// BatchesPerClaim is how many batches one claim sends before the pair is handed back, so a
	// busy account does not keep a slot from the others [10].
	BatchesPerClaim int
	// RetryBase and RetryMax shape the backoff: the n-th failure in a row waits about
	// RetryBase·2^(n-1), at most RetryMax, with jitter (half of it random) [5 s, 1 h].
	RetryBase, RetryMax time.Duration
	// GiveUpAfter disables an endpoint whose pair has been failing this long [72 h].
	GiveUpAfter time.Duration

	// Wakeups, when set, make Run look for due pairs at once, like Wake: a subscription to the
	// event bus's change signals, which on PostgreSQL carry other instances' commits too.
	Wakeups <-chan struct{}

	// Now is the clock of every time the deliverer writes (backoff, leases, signatures); nil:
	// the database clock for the store, time.Now for signatures. Tests move it by hand.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the jitter; nil: math/rand.
	Rand func() float64

	Metrics Metrics
	Log     *slog.Logger
}

// Metrics is what the deliverer reports (metrics.Registry).
type Metrics interface {
	// WebhookDelivery counts one POST by outcome (delivered, failed, disabled) and the changes
	// it carried.
	WebhookDelivery(outcome string, changes int, latency time.Duration)
}

func (c Config) withDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.BatchesPerClaim <= 0 {
		c.BatchesPerClaim = 10
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Hour
	}
	if c.GiveUpAfter <= 0 {
		c.GiveUpAfter = 72 * time.Hour
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Deliverer sends the change log to the endpoints. Build it with New and Run it; every instance
// may run one (the store's leases keep them from sending the same pair at once).
type Deliverer struct {
	cfg    Config
	store  *store.Store
	box    *secret.Box
	client *Client
	owner  string
	wake   chan struct{}
}

// New returns a Deliverer over s that opens secrets with box and sends with client.
func New(s *store.Store, box *secret.Box, client *Client, cfg Config) *Deliverer {
	host, _ := os.Hostname()
	return &Deliverer{cfg: cfg.withDefaults(), store: s, box: box, client: client,
		owner: fmt.Sprintf("webhooks@%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8]), wake: make(chan struct{}, 1)}
}

// Client is the deliverer's HTTP client (for CheckURL).
func (d *Deliverer) Client() *Client { return d.client }

// Owner names this deliverer in the leases it holds.
func (d *Deliverer) Owner() string { return d.owner }

// Wake makes Run look for due pairs now (a change was committed). It never blocks.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deliverer) now() time.Time {
	if d.cfg.Now != nil {
		return d.cfg.Now()
	}
	return time.Time{}
}

func (d *Deliverer) signTime() time.Time {
	if d.cfg.Now != nil {
		return d.cfg.Now()
	}
	return time.Now()
}

// Run delivers until ctx ends, then waits for the deliveries in flight, which are cut short by
// ctx: a POST that was interrupted is sent again by whoever claims the pair next.
func (d *Deliverer) Run(ctx context.Context) error {
	var (
		wg       sync.WaitGroup
		inflight = make(chan struct{}, d.cfg.Concurrency)
		freed    = make(chan struct{}, 1)
	)
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		free := d.cfg.Concurrency - len(inflight)
		claimed := 0
		if free > 0 {
			ds, err := d.store.ClaimDeliveries(ctx, d.owner, d.cfg.Lease, free, d.now())
			if err != nil && ctx.Err() == nil {
				d.cfg.Log.Warn("webhook: claim", "err", err)
			}
			claimed = len(ds)
			for _, pair := range ds {
				inflight <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-inflight
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					d.deliver(ctx, pair)
				})
			}
		}
		if claimed > 0 && claimed == free {
			continue // there may be more due right now
		}
		timer.Reset(d.cfg.Poll)
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-d.cfg.Wakeups:
		case <-freed:
		case <-timer.C:
		}
	}
}

// deliver sends the pair's changes after its cursor, batch by batch, until it is caught up,
// BatchesPerClaim were sent, a batch failed or the lease was lost.
func (d *Deliverer) deliver(ctx context.Context, p store.Delivery) {
	log := d.cfg.Log.With("webhook", p.Webhook.ID, "account", p.AccountID)
	release := true
	defer func() {
		if release {
			if err := d.store.ReleaseDelivery(context.WithoutCancel(ctx), p); err != nil {
				log.Warn("webhook: release", "err", err)
			}
		}
	}()
	plain, err := d.box.Open(p.Webhook.SecretEnc, secret.WebhookContext(p.Webhook.ID))
	if err != nil {
		release = false
		d.disable(ctx, log, p, "the signing secret cannot be opened (was the server key changed?): rotate the secret")
		return
	}
	for range d.cfg.BatchesPerClaim {
		if ctx.Err() != nil {
			return
		}
		batch, last, err := d.next(ctx, p)
		if errors.Is(err, changes.ErrGone) {
			release = false
			d.disable(ctx, log, p, fmt.Sprintf("the changes of account %d after %d were pruned by the retention window: "+
				"re-read its folders; enabling the endpoint again continues from the oldest change kept", p.AccountID, p.Delivered))
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("webhook: read changes", "err", err)
			}
			return
		}
		if last == p.Delivered {
			return // caught up
		}
		if len(batch) == 0 {
			// Only kinds the endpoint does not want: move past them without a POST.
			if err := d.store.AdvanceDelivery(ctx, p, last, nil, d.cfg.Lease, d.now()); err != nil {
				release = !errors.Is(err, task.ErrLeaseLost)
				return
			}
			p.Delivered = last
			continue
		}
		ok, lost := d.post(ctx, log, &p, plain, batch, last)
		if !ok {
			release = !lost
			return
		}
	}
}

// scanPages bounds how many pages of changes one batch looks through for the kinds its endpoint
// wants: past it, the cursor moves over what was looked at, so that a rare kind in a long backlog
// does not hold one read, and the lease, for the whole backlog.
const scanPages = 20

// next reads the changes after the cursor that the endpoint wants, at most BatchSize of them,
// and the number of the last change it covers (wanted or not).
func (d *Deliverer) next(ctx context.Context, p store.Delivery) ([]changes.Change, int64, error) {
	after := p.Delivered
	var out []changes.Change
	for page := 0; len(out) < d.cfg.BatchSize && page < scanPages; page++ {
		cs, err := d.store.Changes(ctx, p.AccountID, after, d.cfg.BatchSize)
		if err != nil {
			return nil, 0, err
		}
		for _, c := range cs {
			if p.Webhook.Wants(c.Kind) {
				out = append(out, c)
			}
			after = c.Seq
			if len(out) == d.cfg.BatchSize {
				break
			}
		}
		if len(cs) < d.cfg.BatchSize {
			break
		}
	}
	return out, after, nil
}

// post sends one batch and moves the cursor to last on 2xx; otherwise it records the failure
// and the backoff. ok: the cursor moved. lost: the lease is no longer ours.
func (d *Deliverer) post(ctx context.Context, log *slog.Logger, p *store.Delivery, secretKey []byte, batch []changes.Change, last int64) (ok, lost bool) {
	body := Batch{Changes: make([]Change, len(batch))}
	for i, c := range batch {
		body.Changes[i] = NewChange(c)
	}
	data, err := json.Marshal(body)
	if err != nil {
		log.Error("webhook: encode batch", "err", err)
		return false, false
	}
	id := uuid.NewString()
	res := d.client.Post(ctx, p.Webhook.URL, string(secretKey), p.Webhook.ID, id, data, d.signTime())
	if ctx.Err() != nil {
		return false, false // stopping: whoever claims the pair next sends the batch again
	}
	a := store.Attempt{WebhookID: p.Webhook.ID, AccountID: p.AccountID, DeliveryID: id, At: d.now(), Status: res.Status,
		Latency: res.Latency, FirstSeq: batch[0].Seq, LastSeq: batch[len(batch)-1].Seq, Count: len(batch)}
	if res.Err == nil {
		if err := d.store.AdvanceDelivery(ctx, *p, last, &a, d.cfg.Lease, d.now()); err != nil {
			// Delivered, not recorded: the next holder sends it again (same ids).
			log.Warn("webhook: advance after a delivery", "err", err)
			d.count("delivered", len(batch), res.Latency)
			return false, errors.Is(err, task.ErrLeaseLost)
		}
		d.count("delivered", len(batch), res.Latency)
		p.Delivered, p.Failures = last, 0
		return true, false
	}
	a.Error = res.Err.Error()
	gone := res.Status == http.StatusGone
	reason := ""
	if gone {
		reason = "the receiver answered 410 Gone: it wants no more deliveries"
	}
	disabled, err := d.store.FailDelivery(ctx, *p, a, d.backoff(p.Failures+1), d.cfg.GiveUpAfter, gone, reason, d.now())
	if err != nil {
		log.Warn("webhook: record a failed delivery", "err", err)
		return false, errors.Is(err, task.ErrLeaseLost)
	}
	if disabled {
		d.count("disabled", len(batch), res.Latency)
		log.Warn("webhook: endpoint disabled", "url", p.Webhook.URL, "err", res.Err)
	} else {
		d.count("failed", len(batch), res.Latency)
		log.Info("webhook: delivery failed", "url", p.Webhook.URL, "failures", p.Failures+1, "err", res.Err)
	}
	return false, true // FailDelivery handed the pair back
}

// backoff is how long the n-th failure in a row waits: RetryBase·2^(n-1) capped at RetryMax,
// of which the second half is random, so that receivers coming back are not hit by every
// endpoint's retry at the same instant.
func (d *Deliverer) backoff(n int) time.Duration {
	delay := d.cfg.RetryBase
	for i := 1; i < n && delay < d.cfg.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.cfg.RetryMax)
	return delay/2 + time.Duration(d.cfg.Rand()*float64(delay/2))
}

func (d *Deliverer) disable(ctx context.Context, log *slog.Logger, p store.Delivery, reason string) {
	ctx = context.WithoutCancel(ctx)
	if err := d.store.DisableWebhook(ctx, p.Webhook.ID, reason); err != nil {
		log.Warn("webhook: disable", "err", err)
	}
	if err := d.store.ReleaseDelivery(ctx, p); err != nil {
		log.Warn("webhook: release", "err", err)
	}
	log.Warn("webhook: endpoint disabled", "reason", reason)
	d.count("disabled", 0, 0)
}

func (d *Deliverer) count(outcome string, n int, latency time.Duration) {
	if d.cfg.Metrics != nil {
		d.cfg.Metrics.WebhookDelivery(outcome, n, latency)
	}
}

// SendTest posts a test event to the endpoint now, records it in the endpoint's history and
// returns the attempt. It moves no cursor.
func (d *Deliverer) SendTest(ctx context.Context, w store.Webhook) (store.Attempt, error) {
	plain, err := d.box.Open(w.SecretEnc, secret.WebhookContext(w.ID))
	if err != nil {
		return store.Attempt{}, fmt.Errorf("webhook %d: the signing secret cannot be opened: %w", w.ID, err)
	}
	id := uuid.NewString()
	now := d.signTime()
	data, err := json.Marshal(Batch{Changes: []Change{{ID: "test:" + id, Kind: TestKind, At: now.UTC(),
		Data: json.RawMessage(fmt.Sprintf(`{"webhook_id":%d}`, w.ID))}}})
	if err != nil {
		return store.Attempt{}, err
	}
	res := d.client.Post(ctx, w.URL, string(plain), w.ID, id, data, now)
	a := store.Attempt{WebhookID: w.ID, DeliveryID: id, At: d.now(), Test: true, Status: res.Status, Latency: res.Latency}
	if res.Err != nil {
		a.Error = res.Err.Error()
	}
	if err := d.store.RecordAttempt(context.WithoutCancel(ctx), a); err != nil {
		return a, err
	}
	outcome := "delivered"
	if res.Err != nil {
		outcome = "failed"
	}
	d.count(outcome, 0, res.Latency)
	if a.At.IsZero() {
		a.At = time.Now().UTC()
	}
	return a, nil
}

// Lags reads every endpoint's delivery lag for the metrics.
func Lags(ctx context.Context, s *store.Store) ([]metrics.WebhookLag, error) {
	hooks, err := s.Webhooks(ctx, 0)
	if err != nil {
		return nil, err
	}
	states, err := s.WebhookStates(ctx, 0)
	if err != nil {
		return nil, err
	}
	out := make([]metrics.WebhookLag, 0, len(hooks))
	for _, w := range hooks {
		st := states[w.ID]
		l := metrics.WebhookLag{ID: w.ID, Enabled: w.Enabled, Behind: st.Behind}
		if !st.OldestUndelivered.IsZero() {
			l.Lag = max(st.Now.Sub(st.OldestUndelivered), 0)
		}
		out = append(out, l)
	}
	return out, nil
}
