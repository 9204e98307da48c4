package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"testing/fstest"
	"time"
)

// loginClock is a LoginGuard under a test clock.
type loginClock struct {
	t   *testing.T
	g   *LoginGuard
	now time.Time
}

func newLoginClock(t *testing.T, p LoginPolicy) *loginClock {
	c := &loginClock{t: t, g: NewLoginGuard(p), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.g.SetClock(func() time.Time { return c.now })
	return c
}

// fail makes n wrong attempts at email from addr, all of them let through.
func (c *loginClock) fail(n int, addr, email string) {
	c.t.Helper()
	for i := range n {
		if ok, _, _ := c.g.Begin(addr, email); !ok {
			c.t.Fatalf("wrong attempt %d at %s from %s refused too early", i+1, email, addr)
		}
		c.g.Failed(addr, email)
	}
}

func (c *loginClock) refused(addr, email string) bool {
	c.t.Helper()
	ok, retry, _ := c.g.Begin(addr, email)
	if !ok && retry <= 0 {
		c.t.Fatal("a refusal without a retry time")
	}
	return !ok
}

func (c *loginClock) delay(addr, email string) time.Duration {
	c.t.Helper()
	ok, _, d := c.g.Begin(addr, email)
	if !ok {
		c.t.Fatalf("%s from %s refused", email, addr)
	}
	c.g.Abandoned(addr, email)
	return d
}

// TestAttackerElsewhereCannotLockUserOut: ten failures from one address once locked the user out
// everywhere. Now they limit that address only; the user, elsewhere, is at most slowed.
func TestAttackerElsewhereCannotLockUserOut(t *testing.T) {
	c := newLoginClock(t, DefaultLoginPolicy())
	c.fail(5, "203.0.113.9", "alice@example.test")
	if !c.refused("203.0.113.9", "alice@example.test") {
		t.Fatal("a sixth guess at alice from the attacker's address went through")
	}
	// The attacker moves on to other users from the same address until the address is spent.
	c.fail(4, "203.0.113.9", "bob@example.test")
	if !c.refused("203.0.113.9", "carol@example.test") {
		t.Fatal("the attacker's address is not limited across emails")
	}
	for _, from := range []string{"198.51.100.7", "2001:db8::1"} {
		if c.refused(from, "alice@example.test") {
			t.Fatalf("alice is locked out at %s by failures from another address", from)
		}
	}
	// Alice signing in from home spends nothing of her allowance.
	for range 20 {
		if ok, _, _ := c.g.Begin("198.51.100.7", "alice@example.test"); !ok {
			t.Fatal("successful logins used up the allowance")
		}
		c.g.Succeeded("198.51.100.7", "alice@example.test")
	}
	// The refusal ends: one more attempt per minute for the pair.
	c.now = c.now.Add(time.Minute)
	if c.refused("203.0.113.9", "alice@example.test") {
		t.Fatal("still refused after the refill")
	}
}

// TestManyAddressesOnlySlowAUser: a guesser spread over many addresses gets no lockout of the
// user, only a delay that grows with the failures and stays bounded.
func TestManyAddressesOnlySlowAUser(t *testing.T) {
	c := newLoginClock(t, DefaultLoginPolicy())
	if d := c.delay("198.51.100.7", "alice@example.test"); d != 0 {
		t.Fatalf("delay %v before any failure", d)
	}
	c.fail(5, "203.0.113.1", "alice@example.test")
	if d := c.delay("198.51.100.7", "alice@example.test"); d != 0 {
		t.Fatalf("delay %v within the free failures", d)
	}
	c.fail(2, "203.0.113.2", "alice@example.test")
	if d := c.delay("198.51.100.7", "alice@example.test"); d != 500*time.Millisecond {
		t.Fatalf("delay %v after 7 failures, want 500ms", d)
	}
	for i := range 200 {
		c.fail(1, fmt.Sprintf("203.0.113.%d", 10+i%200), "alice@example.test")
	}
	if d := c.delay("198.51.100.7", "alice@example.test"); d != 3*time.Second {
		t.Fatalf("delay %v after 207 failures, want the 3s ceiling", d)
	}
	if d := c.delay("198.51.100.7", "bob@example.test"); d != 0 {
		t.Fatalf("bob is slowed (%v) by failures at alice", d)
	}
	c.now = c.now.Add(207 * time.Minute)
	if d := c.delay("198.51.100.7", "alice@example.test"); d != 0 {
		t.Fatalf("delay %v after the failures are forgotten", d)
	}
}

func TestAddressKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"not-an-address", "not-an-address"},
	} {
		if got := addressKey(c.in); got != c.want {
			t.Errorf("addressKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestLimiterStaysBoundedUnderAFlood(t *testing.T) {
	l := NewLimiter(time.Hour, 5)
	for i := range 3 * maxBuckets {
		l.Allow("key-" + strconv.Itoa(i))
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets after a flood of fresh keys, want at most %d", n, maxBuckets)
	}
}

func TestGate(t *testing.T) {
	g := NewGate(2, 50*time.Millisecond)
	r1, err := g.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := g.Enter(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("a third entry: %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("gave up after %v, want the 50ms wait", waited)
	}
	go func() { time.Sleep(10 * time.Millisecond); r1() }()
	r3, err := g.Enter(context.Background())
	if err != nil {
		t.Fatalf("a slot freed within the wait was not taken: %v", err)
	}
	r2()
	r3()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewGate(1, time.Hour).Enter(ctx); err != nil {
		t.Fatalf("a free slot with a cancelled context: %v", err) // free: taken at once
	}
}

func TestGateSize(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		perHash, available uint64
		procs, want        int
	}{
		{64 * mib, 16 << 30, 8, 8},  // plenty of memory: one per processor
		{64 * mib, 1 << 30, 8, 4},   // 1 GiB: a quarter of it is 4 hashes
		{64 * mib, 300 * mib, 8, 1}, // short of memory: still one
		{64 * mib, 0, 2, 1},
		{0, 1 << 30, 3, 3},
	} {
		if got := GateSize(c.perHash, c.available, c.procs); got != c.want {
			t.Errorf("GateSize(%d MiB, %d MiB, %d) = %d, want %d", c.perHash/mib, c.available/mib, c.procs, got, c.want)
		}
	}
}

func TestAvailableMemory(t *testing.T) {
	const mib = 1 << 20
	meminfo := "MemTotal:       8000000 kB\nMemFree:         100000 kB\nMemAvailable:    2097152 kB\n"
	for _, c := range []struct {
		name            string
		files           map[string]string
		goLimit, goUsed uint64
		want            uint64
		ok              bool
	}{
		{"nothing known", nil, 0, 0, 0, false},
		{"meminfo", map[string]string{"proc/meminfo": meminfo}, 0, 0, 2048 * mib, true},
		{"cgroup v2 below meminfo", map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/\n",
			"sys/fs/cgroup/memory.max": "1073741824\n", "sys/fs/cgroup/memory.current": "536870912\n"}, 0, 0, 512 * mib, true},
		{"cgroup v2 nested", map[string]string{"proc/self/cgroup": "0::/system.slice/mailsync.service\n",
			"sys/fs/cgroup/system.slice/mailsync.service/memory.max": "268435456", "sys/fs/cgroup/memory.max": "max"}, 0, 0, 256 * mib, true},
		{"cgroup v2 unlimited", map[string]string{"proc/meminfo": meminfo, "proc/self/cgroup": "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n"}, 0, 0, 2048 * mib, true},
		{"cgroup v1", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "419430400",
			"sys/fs/cgroup/memory/memory.usage_in_bytes": "104857600"}, 0, 0, 300 * mib, true},
		{"cgroup v1 unlimited", map[string]string{"proc/meminfo": meminfo,
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, 0, 0, 2048 * mib, true},
		{"GOMEMLIMIT lowest", map[string]string{"proc/meminfo": meminfo}, 400 * mib, 100 * mib, 300 * mib, true},
		{"GOMEMLIMIT already spent", map[string]string{"proc/meminfo": meminfo}, 100 * mib, 200 * mib, 0, true},
	} {
		fsys := fstest.MapFS{}
		for name, data := range c.files {
			fsys[name] = &fstest.MapFile{Data: []byte(data)}
		}
		got, ok := availableMemory(fsys, c.goLimit, c.goUsed)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %d MiB, %v; want %d MiB, %v", c.name, got/mib, ok, c.want/mib, c.ok)
		}
	}
}

// FuzzAvailableMemory: whatever the system's files hold, the figure is never above any limit
// that was readable, and reading never panics.
func FuzzAvailableMemory(f *testing.F) {
	f.Add("MemAvailable:    2097152 kB\n", "0::/\n", "1073741824\n", "536870912\n", uint64(0), uint64(0))
	f.Add("MemAvailable: x kB", "0::/a/b/\n1:name=systemd:/\n", "max", "", uint64(100), uint64(200))
	f.Add("", "0::", "-1", "99999999999999999999999", uint64(1<<40), uint64(1))
	f.Fuzz(func(t *testing.T, meminfo, cgroup, memMax, memCurrent string, goLimit, goUsed uint64) {
		fsys := fstest.MapFS{
			"proc/meminfo":                 {Data: []byte(meminfo)},
			"proc/self/cgroup":             {Data: []byte(cgroup)},
			"sys/fs/cgroup/memory.max":     {Data: []byte(memMax)},
			"sys/fs/cgroup/memory.current": {Data: []byte(memCurrent)},
		}
		avail, ok := availableMemory(fsys, goLimit, goUsed)
		if !ok && avail != 0 {
			t.Fatalf("unknown, yet %d bytes", avail)
		}
		if goLimit > 0 && (!ok || avail > goLimit) {
			t.Fatalf("%d bytes (ok %v) with GOMEMLIMIT %d", avail, ok, goLimit)
		}
		if limit, found := readUint(fsys, "sys/fs/cgroup/memory.max"); found && avail > limit {
			t.Fatalf("%d bytes above the cgroup's limit %d", avail, limit)
		}
	})
}
