package webhook

import (
	"testing"
	"time"
)

// The n-th failure in a row waits between half and all of RetryBase·2^(n-1), never more than
// RetryMax, and the random half comes from Rand.
func TestBackoff(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		d := &Deliverer{cfg: Config{RetryBase: time.Second, RetryMax: time.Minute, Rand: func() float64 { return r }}.withDefaults()}
		for n, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second,
			7: time.Minute, 50: time.Minute} {
			got := d.backoff(n)
			want := full/2 + time.Duration(r*float64(full/2))
			if got != want || got < full/2 || got > full {
				t.Errorf("rand %.3f, failure %d: %s, want %s (in [%s, %s])", r, n, got, want, full/2, full)
			}
		}
	}
}
