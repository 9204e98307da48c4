package worker

import (
	"testing"
	"time"

	"mailsync/internal/task"
)

// TestBeatCountsFromTheWriteStart checks that a slow fenced write moves the self-fence's clock to
// when the write began, as the database stamps it, not to when it returned.
func TestBeatCountsFromTheWriteStart(t *testing.T) {
	run := newRun(task.Task{ID: "t"}, nil, time.Second)
	run.lastBeat = time.Now().Add(-time.Minute) // the claim, a minute ago
	began := time.Now().Add(-20 * time.Second)  // a batch that took 20 s to commit
	run.Beat(began)
	if since := run.SinceBeat(); since < 20*time.Second || since > 25*time.Second {
		t.Fatalf("SinceBeat = %v after a write that began 20 s ago, want 20 s", since)
	}
	run.Beat(time.Now())
	run.Beat(began) // an older write that returned late never moves the beat back
	if since := run.SinceBeat(); since > time.Second {
		t.Fatalf("SinceBeat = %v: an older write moved the last beat back", since)
	}
}
