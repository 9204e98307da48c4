package auth

import (
	"net/netip"
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
// (keys idle long enough to have refilled) are dropped, then, if that is not enough, any.
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

// Refund gives back the attempt Allow took from key: one that did not count after all.
func (l *Limiter) Refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		b.tokens = min(float64(l.burst), b.tokens+1)
		l.buckets[key] = b
	}
}

func (l *Limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	// Still full: a flood of fresh keys. Drop arbitrary ones (map order is random) rather than
	// grow without bound; a dropped key starts again with a full bucket, which costs the
	// flooder more attempts than it gains.
	for k := range l.buckets {
		if len(l.buckets) < maxBuckets*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// Rate is a token bucket's shape: Burst attempts at once, then one every Every.
type Rate struct {
	Burst int
	Every time.Duration
}

// LoginPolicy is what LoginGuard limits. Nothing in it counts attempts per email alone: a limit
// anyone can spend is a lockout anyone can aim at a user.
type LoginPolicy struct {
	// PerAddress bounds the attempts from one client address (an IPv6 address by its /64):
	// guessing many users' passwords from one place. A successful login gives its attempt back.
	PerAddress Rate
	// PerAddressEmail bounds the failed attempts at one email from one address: guessing one
	// user's password from one place, without touching that user's logins from anywhere else.
	PerAddressEmail Rate
	// An email that failed more than DelayAfter times recently (from anywhere; one failure is
	// forgotten every FailureDecay) has each further attempt held Delay per failure beyond it, at
	// most MaxDelay: a guesser spread over many addresses is slowed, the real user only waits.
	DelayAfter   int
	Delay        time.Duration
	MaxDelay     time.Duration
	FailureDecay time.Duration
}

// DefaultLoginPolicy: 10 attempts per address, then one per 6 s; 5 failures per address and
// email, then one per minute; past 5 recent failures of an email, 250 ms more per failure, at
// most 3 s, one failure forgotten per minute.
func DefaultLoginPolicy() LoginPolicy {
	return LoginPolicy{
		PerAddress:      Rate{Burst: 10, Every: 6 * time.Second},
		PerAddressEmail: Rate{Burst: 5, Every: time.Minute},
		DelayAfter:      5, Delay: 250 * time.Millisecond, MaxDelay: 3 * time.Second,
		FailureDecay: time.Minute,
	}
}

// LoginGuard applies a LoginPolicy. Call Begin before checking a password, then exactly one of
// Succeeded, Failed or Abandoned.
type LoginGuard struct {
	policy LoginPolicy
	addr   *Limiter
	pair   *Limiter
	// fails counts an email's recent failures as the tokens missing from a bucket that refills
	// one per FailureDecay; it never refuses, it only measures.
	fails *Limiter
}

// failureCeiling is the most failures the delay counter remembers per email.
const failureCeiling = 1000

// NewLoginGuard returns a LoginGuard for p; its zero fields take DefaultLoginPolicy's values.
func NewLoginGuard(p LoginPolicy) *LoginGuard {
	d := DefaultLoginPolicy()
	if p.PerAddress.Burst <= 0 || p.PerAddress.Every <= 0 {
		p.PerAddress = d.PerAddress
	}
	if p.PerAddressEmail.Burst <= 0 || p.PerAddressEmail.Every <= 0 {
		p.PerAddressEmail = d.PerAddressEmail
	}
	if p.Delay <= 0 {
		p.DelayAfter, p.Delay = d.DelayAfter, d.Delay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.FailureDecay <= 0 {
		p.FailureDecay = d.FailureDecay
	}
	return &LoginGuard{
		policy: p,
		addr:   NewLimiter(p.PerAddress.Every, p.PerAddress.Burst),
		pair:   NewLimiter(p.PerAddressEmail.Every, p.PerAddressEmail.Burst),
		fails:  NewLimiter(p.FailureDecay, failureCeiling),
	}
}

// SetClock replaces the wall clock (tests).
func (g *LoginGuard) SetClock(now func() time.Time) {
	g.addr.Now, g.pair.Now, g.fails.Now = now, now, now
}

// Begin takes one attempt for email from addr. When a limit refuses it, ok is false and retry
// says when to try again; else delay is how long to hold the attempt before checking the
// password.
func (g *LoginGuard) Begin(addr, email string) (ok bool, retry, delay time.Duration) {
	a := addressKey(addr)
	if ok, retry := g.addr.Allow(a); !ok {
		return false, retry, 0
	}
	if ok, retry := g.pair.Allow(a + " " + email); !ok {
		return false, retry, 0
	}
	return true, 0, g.delay(email)
}

func (g *LoginGuard) delay(email string) time.Duration {
	g.fails.mu.Lock()
	defer g.fails.mu.Unlock()
	b, ok := g.fails.buckets[email]
	if !ok {
		return 0
	}
	left := min(float64(failureCeiling), b.tokens+float64(g.fails.now().Sub(b.at))/float64(g.fails.every))
	over := int(float64(failureCeiling)-left) - g.policy.DelayAfter
	if over <= 0 {
		return 0
	}
	return min(g.policy.MaxDelay, time.Duration(over)*g.policy.Delay)
}

// Succeeded records a correct password: the attempt is given back to both limits, so signing in
// never uses up anyone's allowance.
func (g *LoginGuard) Succeeded(addr, email string) { g.Abandoned(addr, email) }

// Abandoned gives back an attempt whose password was never checked (the server was too busy).
func (g *LoginGuard) Abandoned(addr, email string) {
	a := addressKey(addr)
	g.addr.Refund(a)
	g.pair.Refund(a + " " + email)
}

// Failed records a wrong password (or an unknown email): it keeps its attempts and counts
// towards the email's delay.
func (g *LoginGuard) Failed(_, email string) { g.fails.Allow(email) }

// addressKey is the limiter key of a client address: IPv4 whole, IPv6 by its /64, which one
// client usually holds entirely.
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
