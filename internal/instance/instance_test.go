package instance_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store/storetest"
)

// TestInstancePrunesAndCountsChanges runs an instance whose retention window is a few
// milliseconds: its pruner, started by Run, removes the changes written before, and /metrics
// counts the changes written, by kind, and those pruned.
func TestInstancePrunesAndCountsChanges(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, "sqlite")
	in, err := instance.New(instance.Config{Store: s, Key: instancetest.Key(), Lifecycle: instancetest.Lifecycle(),
		Login: instancetest.AcceptAnyLogin{}, NoReaper: true,
		ChangeRetention: 50 * time.Millisecond, PruneInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	acct := storetest.SeedAccount(t, s)
	storetest.SeedMessages(t, s, in.Tasks, acct.ID, "INBOX", 3) // folder.created, 3 messages, sync.succeeded

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		head, err := s.ChangeHead(ctx, acct.ID)
		if err != nil {
			t.Fatal(err)
		}
		if head.Floor == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance's pruner left head %+v", head)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	rec := httptest.NewRecorder()
	in.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`mailsync_changes_written_total{kind="folder.created"} 1`,
		`mailsync_changes_written_total{kind="message.created"} 3`,
		`mailsync_changes_written_total{kind="sync.succeeded"} 1`,
		`mailsync_changes_written_total{kind="message.deleted"} 0`,
		`mailsync_changes_pruned_total 5`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
