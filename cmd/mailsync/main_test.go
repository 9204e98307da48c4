package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// mailsyncIn runs one command line in-process with stdin and returns its exit code and output.
func mailsyncIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// mailsync is mailsyncIn with nothing on stdin.
func mailsync(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return mailsyncIn(t, "", args...)
}

func TestBadInputIsOneLineAndNonZero(t *testing.T) {
	tooNew := storetest.DSN(t, "sqlite")
	s := storetest.OpenDSN(t, tooNew, true)
	if _, err := s.DB().Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, true)`); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scheme", []string{"--db", "mysql://root@127.0.0.1/x", "migrate"}, "unknown database"},
		{"unreachable database", []string{"--db", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2", "repair"}, "does not answer"},
		{"schema newer than binary", []string{"--db", tooNew, "repair"}, "newer than this binary"},
		{"unknown command", []string{"frobnicate"}, "unexpected argument"},
		{"bad duration", []string{"--heartbeat-timeout", "soon", "repair"}, "heartbeat-timeout"},
		{"bad destination allow-list", []string{"--allow-destinations", "10.0.0.0/33", "migrate"}, "allow-destinations"},
		{"zero IMAP timeout", []string{"--imap-command-timeout", "0s", "repair"}, "--imap-command-timeout must be positive"},
		{"zero change retention", []string{"serve", "--change-retention", "0s"}, "--change-retention must be a positive duration"},
		{"negative change retention", []string{"serve", "--change-retention=-1h"}, "--change-retention must be a positive duration"},
		{"backoff max below base", []string{"--crash-backoff", "1h", "--crash-backoff-max", "1m", "repair"}, "crash backoff max"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := mailsync(t, tc.args...)
			if code == 0 {
				t.Fatal("exit code 0")
			}
			first, _, _ := strings.Cut(stderr, "\n")
			if !strings.Contains(first, tc.want) {
				t.Fatalf("first line of stderr %q does not say %q", first, tc.want)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("stderr shows a panic:\n%s", stderr)
			}
		})
	}
}

// TestChangeRetentionFromTheEnvironment: MAILSYNC_CHANGE_RETENTION is validated like the flag.
func TestChangeRetentionFromTheEnvironment(t *testing.T) {
	t.Setenv("MAILSYNC_CHANGE_RETENTION", "0s")
	code, _, stderr := mailsync(t, "serve")
	if first, _, _ := strings.Cut(stderr, "\n"); code == 0 || !strings.Contains(first, "--change-retention must be a positive duration") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// repair finds the task of a worker that died without a word, reports it and fixes it.
func TestRepairReportsAndFixesDeadTask(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		s := storetest.OpenDSN(t, dsn, true)
		fast := []string{"--db", dsn, "--heartbeat-interval=100ms", "--heartbeat-timeout=500ms", "--self-fence=300ms"}
		cfg := task.DefaultConfig()
		cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.SelfFence = 100*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond
		tasks, err := task.NewManager(s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tk, _, err := tasks.Start(ctx, storetest.SeedAccount(t, s).ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tasks.Claim(ctx, "a-worker-that-dies"); err != nil {
			t.Fatal(err)
		}

		code, out, stderr := mailsync(t, append(fast, "repair")...)
		if code != 0 || !strings.Contains(out, "nothing to repair") {
			t.Fatalf("repair of a live task: code %d, out %q, err %q", code, out, stderr)
		}
		time.Sleep(600 * time.Millisecond) // the worker is silent past the timeout
		code, out, stderr = mailsync(t, append(fast, "repair")...)
		if code != 0 {
			t.Fatalf("repair: code %d: %s", code, stderr)
		}
		if !strings.Contains(out, tk.ID) || !strings.Contains(out, "now queued") || !strings.Contains(out, "repaired 1 task") {
			t.Fatalf("repair output does not report the dead task:\n%s", out)
		}
		got, err := tasks.Get(ctx, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != task.Queued || got.Owner != "" {
			t.Fatalf("after repair the task is %s owned by %q", got.State, got.Owner)
		}
	})
}

func TestVersion(t *testing.T) {
	code, out, _ := mailsync(t, "version")
	if code != 0 || !strings.HasPrefix(out, "mailsync ") {
		t.Fatalf("version: %d %q", code, out)
	}
}
