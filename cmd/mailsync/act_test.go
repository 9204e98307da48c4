package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailsync/internal/action"
	"mailsync/internal/imaptest"
	"mailsync/internal/smtptest"
	"mailsync/internal/store"
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

// TestSendCommand runs `mailsync send` against a real Dovecot and a real SMTP server: the message
// (text from stdin, an attachment, a Bcc) is submitted once to exactly its recipients and its copy
// lands in Sent; the same --idempotency-key again prints the same action and sends nothing more; a
// subject that would inject a header field is refused before anything is stored; a refusal of the
// SMTP server exits non-zero with its words.
func TestSendCommand(t *testing.T) {
	dovecot := imaptest.StartDovecot(t)
	u := dovecot.AddUser(t, "erin", "erin-imap-pw")
	c := dovecot.Client(t, u)
	c.CreateFolder("Sent")
	c.AddMessage("INBOX", []byte("From: frank@example.test\r\nSubject: Notes?\r\nMessage-ID: <ask@example.test>\r\n"+
		"References: <root@example.test>\r\n\r\nAny notes?\r\n"))
	dsn := storetest.DSN(t, "sqlite")
	common := []string{"--db", dsn, "--data-dir", t.TempDir()}
	run := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return mailsyncIn(t, stdin, append(append([]string{}, common...), args...)...)
	}
	if code, _, stderr := run("a-long-password\n", "user", "add", "erin@example.test", "--password-stdin"); code != 0 {
		t.Fatal(stderr)
	}
	srv := smtptest.Start(t, smtptest.WithUser(u.Login, u.Password))
	for name, extra := range map[string][]string{"mail": {"--smtp-url", "smtp://" + srv.Addr()}, "nosmtp": nil} {
		args := append([]string{"account", "add", "--user", "erin@example.test", "--name", name,
			"--imap-url", "imap://" + u.Login + "@" + dovecot.Addr(), "--tls", "none", "--tls-skip-verify", "--password-stdin"}, extra...)
		if code, _, stderr := run(u.Password+"\n", args...); code != 0 {
			t.Fatal(stderr)
		}
	}
	if code, _, stderr := run("", "sync", "mail"); code != 0 {
		t.Fatal(stderr)
	}
	s := storetest.OpenDSN(t, dsn, false)
	var mailID int64
	if err := s.DB().QueryRow(`SELECT id FROM accounts WHERE name = 'mail'`).Scan(&mailID); err != nil {
		t.Fatal(err)
	}
	// The refusing server below replaces the tested one behind the account's back.
	useSMTP := func(srv *smtptest.Server) {
		t.Helper()
		if err := s.SetAccountSMTP(context.Background(), mailID, store.SMTP{Host: "127.0.0.1", Port: srv.Port(), TLSMode: "starttls"}); err != nil {
			t.Fatal(err)
		}
	}
	countActions := func() int {
		t.Helper()
		var n int
		if err := s.DB().QueryRow(`SELECT count(*) FROM actions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	attachment := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(attachment, []byte("the notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	send := []string{"send", "mail", "--from", "Erin <erin@example.test>", "--to", "Frank <frank@example.test>",
		"--to", `"Doe, Jane" <jane@example.test>`, "--bcc", "gil@example.test", "--subject", "Hello — notes",
		"--attach", attachment, "--idempotency-key", "notes-1", "--json"}
	code, out, stderr := run("Hi Frank,\nthe notes are attached.\n", send...)
	if code != 0 {
		t.Fatalf("send: %d %s", code, stderr)
	}
	var v struct {
		ID        int64        `json:"id"`
		Kind      action.Kind  `json:"kind"`
		State     action.State `json:"state"`
		MessageID string       `json:"message_id"`
		Result    action.Result
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if v.Kind != action.Send || v.State != action.Done || !strings.HasPrefix(v.Result.SMTP, "250") {
		t.Fatalf("send printed %+v, want a done send with the server's 250", v)
	}
	got := srv.Messages()
	if len(got) != 1 {
		t.Fatalf("the SMTP server received %d messages, want 1", len(got))
	}
	rcpts := slices.Clone(got[0].Rcpts)
	slices.Sort(rcpts)
	if !slices.Equal(rcpts, []string{"frank@example.test", "gil@example.test", "jane@example.test"}) || got[0].From != "erin@example.test" {
		t.Fatalf("submitted from %q to %v", got[0].From, got[0].Rcpts)
	}
	data := string(got[0].Data)
	for _, want := range []string{"notes.txt", "Hi Frank,", "jane@example.test"} {
		if !strings.Contains(data, want) {
			t.Errorf("the submitted message lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(data, "gil@example.test") {
		t.Errorf("the Bcc recipient is written in the message:\n%s", data)
	}
	if copies := c.CopiesOf("Sent", v.MessageID); len(copies) != 1 {
		t.Errorf("Sent holds %d copies of the message, want 1", len(copies))
	}

	// The same key again, as a script retrying a run it saw die: the same action, no second send.
	before := countActions()
	code, out, stderr = run("Hi Frank,\nthe notes are attached.\n", send...)
	var again struct{ ID int64 }
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil || again.ID != v.ID {
		t.Fatalf("send again with the same key: %d %q %s, want action %d", code, out, stderr, v.ID)
	}
	if n := len(srv.Messages()); n != 1 || countActions() != before {
		t.Fatalf("the same key again: %d messages submitted and %d actions stored, want 1 and none", n, countActions()-before)
	}

	// A reply: threaded by the stored message it answers.
	var askID int64
	if err := s.DB().QueryRow(`SELECT id FROM messages WHERE message_id = 'ask@example.test'`).Scan(&askID); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run("Here they are.\n", "send", "mail", "--from", "erin@example.test", "--to", "frank@example.test",
		"--subject", "Re: Notes?", "--reply-to", strconv.FormatInt(askID, 10)); code != 0 {
		t.Fatalf("send --reply-to: %d %s", code, stderr)
	}
	got = srv.Messages()
	reply, err := mail.ReadMessage(bytes.NewReader(got[len(got)-1].Data))
	if err != nil {
		t.Fatal(err)
	}
	if h := reply.Header; h.Get("In-Reply-To") != "<ask@example.test>" || h.Get("References") != "<root@example.test> <ask@example.test>" {
		t.Fatalf("the reply's In-Reply-To %q, References %q", h.Get("In-Reply-To"), h.Get("References"))
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a reply to no stored message", []string{"send", "mail", "--from", "erin@example.test", "--to", "frank@example.test", "--subject", "Re", "--reply-to", "999999"}, "no such message"},
		{"header injection", []string{"send", "mail", "--from", "erin@example.test", "--to", "frank@example.test", "--subject", "Hi\r\nBcc: mallory@example.test"}, "subject"},
		{"no sender", []string{"send", "mail", "--to", "frank@example.test", "--subject", "Hi"}, "give --from"},
		{"no SMTP server", []string{"send", "nosmtp", "--from", "erin@example.test", "--to", "frank@example.test", "--subject", "Hi"}, "no SMTP server"},
		{"no recipient", []string{"send", "mail", "--from", "erin@example.test", "--subject", "Hi"}, "--to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countActions()
			code, _, stderr := run("text\n", tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("%q: %d %q, want a refusal saying %q", tc.args, code, stderr, tc.want)
			}
			if n := countActions() - before; n != 0 {
				t.Fatalf("a refused send stored %d actions", n)
			}
		})
	}

	useSMTP(smtptest.Start(t, smtptest.WithUser(u.Login, u.Password), smtptest.WithDataReply(554, "5.7.1 Message rejected as spam")))
	code, out, stderr = run("Buy now.\n", "send", "mail", "--from", "erin@example.test", "--to", "frank@example.test", "--subject", "Offer")
	if code == 0 || !strings.Contains(stderr, "5.7.1") || !strings.Contains(out, "failed") {
		t.Fatalf("a send the SMTP server refuses: %d %q %q, want non-zero with its words", code, out, stderr)
	}
}
