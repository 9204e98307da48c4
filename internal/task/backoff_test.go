package task

import (
	"testing"
	"time"
)

// ended is a finished task of the history the backoff reads, newest first.
func ended(state State, attempt, deaths int, finished time.Time) Task {
	return Task{State: state, Attempt: attempt, MaxAttempts: 3, Deaths: deaths, FinishedAt: finished}
}

func TestDied(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		task Task
		want bool
	}{
		{"reaped on its last attempt after two deaths", ended(Failed, 3, 3, at), true},
		{"abandoned by a Start on its only attempt", ended(Failed, 1, 1, at), true},
		{"one death, then a failure of its own", ended(Failed, 2, 1, at), false},
		{"an ordinary failure", ended(Failed, 1, 0, at), false},
		{"deaths, then success", ended(Succeeded, 3, 2, at), false},
		{"a cancelled task whose worker died", ended(Cancelled, 1, 1, at), false},
	}
	for _, c := range cases {
		if got := Died(c.task); got != c.want {
			t.Errorf("%s: Died = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCrashBackoff(t *testing.T) {
	const (
		base = 5 * time.Minute
		max  = time.Hour
	)
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	dead := func(ago time.Duration) Task { return ended(Failed, 3, 3, t0.Add(-ago)) }
	ok := func(ago time.Duration) Task { return ended(Succeeded, 1, 0, t0.Add(-ago)) }
	failed := func(ago time.Duration) Task { return ended(Failed, 1, 0, t0.Add(-ago)) }
	cases := []struct {
		name   string
		recent []Task
		now    time.Time
		want   time.Time // zero: not held
	}{
		{"no history", nil, t0, time.Time{}},
		{"last sync succeeded", []Task{ok(time.Minute), dead(time.Hour)}, t0, time.Time{}},
		{"an ordinary failure is not a crash", []Task{failed(time.Minute)}, t0, time.Time{}},
		{"one dead task: the base delay", []Task{dead(time.Minute), ok(time.Hour)}, t0, t0.Add(4 * time.Minute)},
		{"one dead task, its delay passed", []Task{dead(5 * time.Minute)}, t0, time.Time{}},
		{"two in a row: doubled", []Task{dead(time.Minute), dead(time.Hour)}, t0, t0.Add(9 * time.Minute)},
		{"three in a row: doubled twice", []Task{dead(time.Minute), dead(time.Hour), dead(2 * time.Hour)}, t0, t0.Add(19 * time.Minute)},
		{"a success breaks the run", []Task{dead(time.Minute), ok(time.Hour), dead(2 * time.Hour), dead(3 * time.Hour)}, t0, t0.Add(4 * time.Minute)},
		{"many in a row: capped", []Task{dead(time.Minute), dead(1), dead(2), dead(3), dead(4), dead(5), dead(6), dead(7), dead(8)}, t0, t0.Add(59 * time.Minute)},
		{"capped, and passed", []Task{dead(time.Hour), dead(2 * time.Hour), dead(3 * time.Hour), dead(4 * time.Hour), dead(5 * time.Hour), dead(6 * time.Hour)}, t0, time.Time{}},
		{"the clock decides: later", []Task{dead(time.Minute)}, t0.Add(3 * time.Minute), t0.Add(4 * time.Minute)},
		{"the clock decides: past the delay", []Task{dead(time.Minute)}, t0.Add(4 * time.Minute), time.Time{}},
	}
	for _, c := range cases {
		if got := CrashBackoff(c.recent, c.now, base, max); !got.Equal(c.want) {
			t.Errorf("%s: held until %v, want %v", c.name, got, c.want)
		}
	}
	if got := CrashBackoff([]Task{dead(time.Minute)}, t0, 0, max); !got.IsZero() {
		t.Errorf("a zero base still holds the account until %v", got)
	}
}
