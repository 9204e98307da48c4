package task

import (
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("the default config is invalid: %v", err)
	}
	cases := map[string]func(*Config){
		"zero interval":           func(c *Config) { c.HeartbeatInterval = 0 },
		"interval over half":      func(c *Config) { c.HeartbeatInterval = 40 * time.Second },
		"fence after the timeout": func(c *Config) { c.SelfFence = 70 * time.Second },
		"fence before a beat":     func(c *Config) { c.SelfFence = 10 * time.Second },
		"no attempts":             func(c *Config) { c.MaxAttempts = 0 },
		"negative run time":       func(c *Config) { c.MaxRunTime = -time.Second },
		"negative crash backoff":  func(c *Config) { c.CrashBackoff = -time.Second },
		"backoff max below base":  func(c *Config) { c.CrashBackoffMax = time.Minute },
	}
	for name, mutate := range cases {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLive(t *testing.T) {
	c := DefaultConfig()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		task Task
		want bool
	}{
		{"fresh queued", Task{State: Queued, CreatedAt: base, ObservedAt: base.Add(time.Minute)}, true},
		{"queued too long", Task{State: Queued, CreatedAt: base, ObservedAt: base.Add(11 * time.Minute)}, false},
		{"requeued recently", Task{State: Queued, CreatedAt: base, HeartbeatAt: base.Add(10 * time.Minute), ObservedAt: base.Add(11 * time.Minute)}, true},
		{"running, beat 59 s ago", Task{State: Running, HeartbeatAt: base, ObservedAt: base.Add(59 * time.Second)}, true},
		{"running, beat 61 s ago", Task{State: Running, HeartbeatAt: base, ObservedAt: base.Add(61 * time.Second)}, false},
		{"succeeded", Task{State: Succeeded, ObservedAt: base}, false},
		{"failed", Task{State: Failed, ObservedAt: base}, false},
	}
	for _, tc := range cases {
		if got := c.Live(tc.task); got != tc.want {
			t.Errorf("%s: live = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPercent(t *testing.T) {
	cases := []struct {
		task Task
		want float64
	}{
		{Task{State: Running}, 0},
		{Task{State: Running, Progress: Progress{MessagesTotal: 200, MessagesDone: 50}}, 25},
		{Task{State: Running, Progress: Progress{MessagesTotal: 10, MessagesDone: 20}}, 100},
		{Task{State: Succeeded}, 100},
	}
	for _, tc := range cases {
		if got := Percent(tc.task); got != tc.want {
			t.Errorf("Percent(%+v) = %v, want %v", tc.task.Progress, got, tc.want)
		}
	}
}
