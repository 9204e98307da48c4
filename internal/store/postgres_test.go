package store_test

import (
	"context"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// Every PostgreSQL session of mailsync carries bounds on what it may hold, and a DSN that names
// one keeps its own value.
func TestPostgresSessionLimits(t *testing.T) {
	cases := []struct {
		name, dsnParams   string
		idleInTx, stmtMax string
	}{
		{"defaults", "", "10s", "1min"},
		{"the DSN's own values", "&idle_in_transaction_session_timeout=2500&statement_timeout=90s", "2500ms", "90s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := storetest.OpenDSN(t, storetest.DSN(t, "postgres")+tc.dsnParams, true)
			for param, want := range map[string]string{
				"idle_in_transaction_session_timeout": tc.idleInTx,
				"statement_timeout":                   tc.stmtMax,
			} {
				var got string
				if err := s.DB().QueryRow(`SHOW ` + param).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s = %s, want %s", param, got, want)
				}
			}
		})
	}
}

// A client that stops inside a transaction (here: simply stops sending) loses its session, and
// with it the task row lock it held, once idle_in_transaction_session_timeout has passed.
func TestPostgresEndsSessionIdleInTransaction(t *testing.T) {
	ctx := context.Background()
	s := storetest.OpenDSN(t, storetest.DSN(t, "postgres")+"&idle_in_transaction_session_timeout=300", true)
	m, err := task.NewManager(s, task.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := m.Start(ctx, storetest.SeedAccount(t, s).ID, false)
	if err != nil {
		t.Fatal(err)
	}
	frozen, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Rollback()
	if _, err := frozen.Exec(`SELECT id FROM sync_tasks WHERE id = $1 FOR UPDATE`, tk.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond) // the client is silent inside its transaction

	var id string
	if err := s.DB().QueryRow(`SELECT id FROM sync_tasks WHERE id = $1 FOR UPDATE NOWAIT`, tk.ID).Scan(&id); err != nil {
		t.Fatalf("the silent session still holds the row: %v", err)
	}
	if err := frozen.Commit(); err == nil {
		t.Fatal("the transaction of a session ended by the server committed")
	}
}
