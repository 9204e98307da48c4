package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mailsync/internal/httpapi"
	"mailsync/internal/instance"
	"mailsync/internal/instance/instancetest"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// parseChangeLines reads the JSON lines of `mailsync changes --json`.
func parseChangeLines(t *testing.T, out string) []httpapi.ChangeJSON {
	t.Helper()
	var cs []httpapi.ChangeJSON
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var c httpapi.ChangeJSON
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("line %q is not a change: %v", line, err)
		}
		cs = append(cs, c)
	}
	return cs
}

func TestChangesCommand(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		dsn := storetest.DSN(t, d)
		s := storetest.OpenDSN(t, dsn, true)
		tasks, err := task.NewManager(s, instancetest.Lifecycle())
		if err != nil {
			t.Fatal(err)
		}
		a := storetest.SeedAccount(t, s) // named "acct"
		storetest.SeedMessages(t, s, tasks, a.ID, "INBOX", 3)
		log, err := s.Changes(context.Background(), a.ID, 0, 100)
		if err != nil || len(log) < 4 {
			t.Fatalf("log: %d changes, %v", len(log), err)
		}

		// --json prints the API's form of every change, in order.
		code, out, stderr := mailsync(t, "--db", dsn, "changes", "acct", "--json")
		if code != 0 {
			t.Fatalf("changes --json: %d %s", code, stderr)
		}
		got := parseChangeLines(t, out)
		if len(got) != len(log) {
			t.Fatalf("%d lines, the log has %d changes", len(got), len(log))
		}
		for i, c := range got {
			want := httpapi.NewChangeJSON(log[i])
			if c.ID != want.ID || c.Seq != want.Seq || c.Kind != want.Kind || c.UID != want.UID || string(c.Data) != string(want.Data) {
				t.Fatalf("line %d: %+v, want %+v", i, c, want)
			}
		}

		// The readable form: one line a change; --after starts after a seq; the id works too.
		code, out, _ = mailsync(t, "--db", dsn, "changes", "1", "--after", "2")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != len(log)-2 || !strings.Contains(lines[0], "message.created") ||
			!strings.Contains(lines[0], `"Subject 2" from sender-2@example.test`) || !strings.Contains(lines[0], "INBOX uid 2") {
			t.Fatalf("changes --after 2: %d %q", code, out)
		}

		// A pruned position is an error that says what to do; no position is the oldest kept.
		if _, err := s.PruneChanges(context.Background(), time.Now().Add(time.Hour), 2); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = mailsync(t, "--db", dsn, "changes", "acct", "--after", "1")
		if code == 0 || !strings.Contains(stderr, "no longer kept") || !strings.Contains(stderr, "re-read the account's folders") {
			t.Fatalf("pruned --after: %d %q", code, stderr)
		}
		code, out, _ = mailsync(t, "--db", dsn, "changes", "acct", "--json")
		if rest := parseChangeLines(t, out); code != 0 || len(rest) != len(log)-2 || rest[0].Seq != 3 {
			t.Fatalf("after pruning: %d %d lines", code, len(rest))
		}
		code, _, stderr = mailsync(t, "--db", dsn, "changes", "nosuch")
		if code == 0 || !strings.Contains(stderr, `no account named "nosuch"`) {
			t.Fatalf("unknown account: %d %q", code, stderr)
		}
	})
}

// `mailsync changes --follow` is a real process that prints changes as they commit and ends
// cleanly on SIGINT.
func TestChangesFollowPrintsNewChangesUntilInterrupted(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, d string) {
		// The writer is an instance as serve runs it: its commits notify followers on PostgreSQL.
		dsn := storetest.DSN(t, d)
		s := storetest.OpenDSN(t, dsn, true)
		in, err := instance.New(instance.Config{Store: s, DSN: dsn, Key: instancetest.Key(), Lifecycle: instancetest.Lifecycle(),
			Login: instancetest.AcceptAnyLogin{}, NoReaper: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			_ = in.Run(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-ran
			_ = in.Close()
		})
		tasks := in.Tasks
		a := storetest.SeedAccount(t, s)
		storetest.SeedMessages(t, s, tasks, a.ID, "INBOX", 2) // 1-3

		// On PostgreSQL the poll is a minute away: what comes sooner came through LISTEN.
		poll := map[string]string{"sqlite": "200ms", "postgres": "1m"}[d]
		cmd := exec.Command(os.Args[0], "--db", dsn, "changes", "acct", "--follow", "--json", "--poll", poll)
		cmd.Env = append(os.Environ(), mainEnv+"=1")
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		lines := make(chan httpapi.ChangeJSON, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var c httpapi.ChangeJSON
				if json.Unmarshal(sc.Bytes(), &c) == nil {
					lines <- c
				}
			}
		}()
		wantSeqs := func(from, to int64) {
			t.Helper()
			for seq := from; seq <= to; seq++ {
				select {
				case c, ok := <-lines:
					if !ok || c.Seq != seq || c.AccountID != a.ID {
						t.Fatalf("line %+v (open %v), want change %d", c, ok, seq)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("change %d not printed within 10 s", seq)
				}
			}
		}
		wantSeqs(1, 3)
		// Committed while it follows, until it prints them (its LISTEN connects in the background).
		for i := 0; ; i++ {
			storetest.SeedMessages(t, s, tasks, a.ID, fmt.Sprintf("F%d", i), 2)
			select {
			case c := <-lines:
				if c.Seq != 4 {
					t.Fatalf("first change printed while following: %+v, want 4", c)
				}
			case <-time.After(time.Second):
				if i == 10 {
					t.Fatal("changes --follow printed nothing of 10 commits")
				}
				continue
			}
			break
		}
		head, err := s.ChangeHead(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantSeqs(5, head.Last)

		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Fatalf("after SIGINT: %v, want exit 0", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("changes --follow did not end within 10 s of SIGINT")
		}
		if c, ok := <-lines; ok {
			t.Fatalf("a line after the last change: %+v", c)
		}
	})
}
