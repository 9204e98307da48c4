// Package webhook delivers the change log to the endpoints users registered: every instance runs
// a Deliverer, which claims due (endpoint, account) pairs from the store (their cursors are the
// outbox: see migration 00010), POSTs the changes after the cursor as one signed JSON batch, and
// moves the cursor only when the receiver answered 2xx. Failures back off exponentially with
// jitter; an endpoint failing for too long, or answered 410 Gone, is disabled with the reason.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mailsync/internal/changes"
)

// The headers of every delivery.
const (
	// HeaderTimestamp is the Unix time in seconds at which the request was signed.
	HeaderTimestamp = "X-Mailsync-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, under the endpoint's secret, of the
	// timestamp, ".", and the body.
	HeaderSignature = "X-Mailsync-Signature"
	// HeaderDelivery names the attempt (it is in the endpoint's delivery history). A retried
	// batch has a new one: the per-change "id" is what a receiver deduplicates on.
	HeaderDelivery = "X-Mailsync-Delivery"
	// HeaderWebhook is the endpoint's id.
	HeaderWebhook = "X-Mailsync-Webhook"
)

// TestKind is the kind of the one change of a test event; it is never in the change log.
const TestKind = "webhook.test"

// NewSecret returns a new signing secret: "whsec_" and 32 random bytes in hex. The whole string
// is the HMAC key.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + hex.EncodeToString(b)
}

// Sign returns the signature header's value for a body signed at ts.
func Sign(secret string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrSignature is matched by every refusal of Verify.
var ErrSignature = errors.New("webhook: bad signature")

// Verify checks a delivery as a receiver should: the signature matches the body under secret
// and the timestamp is within tolerance of now (a replayed old request is refused). The header
// may carry several "v1=" values, comma-separated (none are sent today; a rotation might).
func Verify(secret, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrSignature, timestamp)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, %s away from now", ErrSignature, ts.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	want := Sign(secret, ts, body)
	for _, got := range strings.Split(signature, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("%w: no v1 signature matches", ErrSignature)
}

// Change is a change as a receiver gets it: the API's shape, with its idempotency id.
type Change struct {
	// ID is "<account>:<seq>", the same for a change in the API, the stream and every delivery.
	ID        string          `json:"id"`
	AccountID int64           `json:"account_id"`
	Seq       int64           `json:"seq"`
	Kind      string          `json:"kind"`
	Folder    string          `json:"folder"`
	UID       uint32          `json:"uid"`
	TaskID    string          `json:"task_id"`
	At        time.Time       `json:"at"`
	Data      json.RawMessage `json:"data"`
}

// Batch is the body of a delivery.
type Batch struct {
	Changes []Change `json:"changes"`
}

// NewChange is c as a delivery carries it: byte for byte what the API and the stream serve
// (httpapi.NewChangeJSON; a test holds the two together).
func NewChange(c changes.Change) Change {
	data := c.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return Change{ID: changes.ID(c.AccountID, c.Seq), AccountID: c.AccountID, Seq: c.Seq, Kind: string(c.Kind), Folder: c.Folder,
		UID: c.UID, TaskID: c.TaskID, At: c.At, Data: data}
}
