package mailgen

import "math"

// rng is SplitMix64: tiny, fast and, being our own, it gives the same mail for a seed on every Go
// version and platform (math/rand makes no such promise across releases). It is not for
// cryptography.
type rng struct{ state uint64 }

// newRNG derives an independent stream for message i of a corpus, so any message can be made
// on its own (Message) and the corpus can be made in any order.
func newRNG(seed int64, i int) *rng {
	r := &rng{state: mix64(uint64(seed)) ^ mix64(uint64(i)+0x632be59bd9b4e019)}
	r.next()
	return r
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix64(r.state)
}

// intn returns a number in [0, n). The modulo bias is irrelevant for test data.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}

// between returns a number in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// float returns a number in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

func (r *rng) chance(p float64) bool { return r.float() < p }

// lognormal draws from a log-normal distribution: most values near exp(mu), a long tail above,
// the shape of real message and attachment sizes.
func (r *rng) lognormal(mu, sigma float64) float64 {
	// Box-Muller.
	u1 := r.float()
	for u1 == 0 {
		u1 = r.float()
	}
	n := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*r.float())
	return math.Exp(mu + sigma*n)
}

// fill writes random bytes into b.
func (r *rng) fill(b []byte) {
	for len(b) >= 8 {
		v := r.next()
		b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		b[4], b[5], b[6], b[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		b = b[8:]
	}
	v := r.next()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }
