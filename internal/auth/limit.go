package auth

import (
	"sync"
	"time"
)

// Limiter is a token bucket per key (a client address, an email): Burst attempts at once, then
// one every Every. It keeps password guessing slow without locking real users out for long.
type Limiter struct {
	every time.Duration
	burst int
	// Now replaces the wall clock when set (tests).
	Now func() time.Time

	mu      sync.Mutex
	buckets map[string]bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the limiter's memory under a flood of distinct keys: past it, full buckets
// (keys idle long enough to have refilled) are dropped.
const maxBuckets = 10000

// NewLimiter returns a Limiter allowing burst attempts per key, refilled one per every.
func NewLimiter(every time.Duration, burst int) *Limiter {
	return &Limiter{every: every, burst: burst, buckets: make(map[string]bucket)}
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Allow takes one attempt from key's bucket. When it is empty, Allow returns false and how long
// until the next attempt is allowed.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = bucket{tokens: float64(l.burst), at: now}
	}
	b.tokens = min(float64(l.burst), b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
	if b.tokens < 1 {
		l.buckets[key] = b
		return false, time.Duration((1 - b.tokens) * float64(l.every))
	}
	b.tokens--
	l.buckets[key] = b
	return true, 0
}

func (l *Limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
}
