package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailsync/internal/action"
	"mailsync/internal/imaptest"
	"mailsync/internal/store/storetest"
)

// TestActionCommands runs `mailsync flag` and `mailsync move` against a real Dovecot, with no
// server: each command runs the account's task itself, waits for its action and prints it; the
// server holds what the output says; a move the server refuses exits non-zero with the reason;
// input that cannot be an action is refused before anything is stored.
func TestActionCommands(t *testing.T) {
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "erin", "erin-imap-pw")
	c := dovecot.Client(t, u)
	c.CreateFolder("Archive")
	c.CreateFolder("Gone")
	ids := map[string]string{}
	for _, name := range []string{"read", "move", "stay"} {
		mid := name + "@cli.example.test"
		c.AddMessage("INBOX", []byte("From: Frank <frank@example.test>\r\nTo: erin@example.test\r\nSubject: "+name+
			"\r\nMessage-ID: <"+mid+">\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\n\r\nHello.\r\n"))
		ids[name] = mid
	}
	dsn := storetest.DSN(t, "sqlite")
	common := []string{"--db", dsn, "--data-dir", t.TempDir()}
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return mailsyncIn(t, stdin, append(append([]string{}, common...), args...)...)
	}
	if code, _, stderr := run("a-long-password\n", "user", "add", "erin@example.test", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := run(u.Password+"\n", "account", "add", "--user", "erin@example.test", "--name", "mail",
		"--imap-url", "imap://"+u.Login+"@"+dovecot.Addr(), "--tls", "none", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := run("", "sync", "mail"); code != 0 {
		t.Fatal(stderr)
	}
	s := storetest.OpenDSN(t, dsn, false)
	stored := func(messageID string) string {
		t.Helper()
		var id int64
		if err := s.DB().QueryRow(`SELECT id FROM messages WHERE message_id = ?`, messageID).Scan(&id); err != nil {
			t.Fatalf("stored message %s: %v", messageID, err)
		}
		return fmt.Sprint(id)
	}

	code, out, stderr := run("", "flag", "mail", stored(ids["read"]), "--add", `\Seen`, "--json")
	if code != 0 {
		t.Fatalf("flag: %d %s", code, stderr)
	}
	var v struct {
		ID    int64        `json:"id"`
		Kind  action.Kind  `json:"kind"`
		State action.State `json:"state"`
		Add   []string     `json:"add"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if v.Kind != action.Flags || v.State != action.Done || !slices.Equal(v.Add, []string{`\Seen`}) {
		t.Fatalf("flag printed %+v, want a done flags action adding \\Seen", v)
	}
	if got := c.CopiesOf("INBOX", "<"+ids["read"]+">"); len(got) != 1 || !slices.Contains(got[0], `\Seen`) {
		t.Fatalf("after flag the server has %v, want the message read", got)
	}

	code, out, stderr = run("", "move", "mail", stored(ids["move"]), "--to", "Archive")
	if code != 0 || !strings.Contains(out, "done") || !strings.Contains(out, "Archive") {
		t.Fatalf("move: %d %q %s", code, out, stderr)
	}
	if n, m := len(c.CopiesOf("INBOX", "<"+ids["move"]+">")), len(c.CopiesOf("Archive", "<"+ids["move"]+">")); n != 0 || m != 1 {
		t.Fatalf("after move INBOX holds %d copies and Archive %d, want 0 and 1", n, m)
	}

	c.DeleteFolder("Gone") // behind mailsync's back: the store still has it
	code, out, stderr = run("", "move", "mail", stored(ids["stay"]), "--to", "Gone")
	if code == 0 || !strings.Contains(stderr, "failed") {
		t.Fatalf("move to a folder the server no longer has: %d %q %q, want a failure", code, out, stderr)
	}
	if !strings.Contains(out, "failed: ") {
		t.Errorf("the failed move printed %q, want its state and reason", out)
	}
	if got := c.CopiesOf("INBOX", "<"+ids["stay"]+">"); len(got) != 1 {
		t.Fatalf("after the failed move INBOX holds %d copies, want 1", len(got))
	}

	var before int
	if err := s.DB().QueryRow(`SELECT count(*) FROM actions`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such message", []string{"flag", "mail", "999999", "--add", `\Seen`}, "stores no message 999999"},
		{"nothing to do", []string{"flag", "mail", stored(ids["stay"])}, "nothing to do"},
		{"not a flag", []string{"flag", "mail", stored(ids["stay"]), "--add", "two words"}, "IMAP does not allow"},
		{"added and removed", []string{"flag", "mail", stored(ids["stay"]), "--add", `\Seen`, "--remove", `\seen`}, "both added and removed"},
		{"no such account", []string{"move", "nobody", stored(ids["stay"]), "--to", "Archive"}, `no account named "nobody"`},
		{"no destination", []string{"move", "mail", stored(ids["stay"])}, "--to"},
		{"no such folder", []string{"move", "mail", stored(ids["stay"]), "--to", "Nowhere"}, `no folder "Nowhere"`},
		{"system flag that is none", []string{"flag", "mail", stored(ids["stay"]), "--add", `\Important`}, "not a system flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run("", tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("%v: %d %q, want a refusal saying %q", tc.args, code, stderr, tc.want)
			}
		})
	}
	var after int
	if err := s.DB().QueryRow(`SELECT count(*) FROM actions`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("refused command lines stored %d actions", after-before)
	}
}
