package imaptest

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func testMessage(i int) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.org\r\nSubject: test %d\r\nMessage-ID: <%d@example.org>\r\n\r\nbody %d\r\n", i, i, i)
}

func listNames(t *testing.T, c *Client) []string {
	t.Helper()
	data, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var names []string
	for _, d := range data {
		names = append(names, d.Mailbox)
	}
	sort.Strings(names)
	return names
}

func fetchAll(t *testing.T, c *Client, folder string) map[uint32][]byte {
	t.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatalf("select %q: %v", folder, err)
	}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch %q: %v", folder, err)
	}
	out := map[uint32][]byte{}
	for _, m := range msgs {
		out[uint32(m.UID)] = m.BodySection[0].Bytes
	}
	return out
}

func TestDovecotClientAndRestart(t *testing.T) {
	d := StartDovecot(t)
	u := d.AddUser(t, "alice", "secret")
	c := d.Client(t, u)

	c.CreateFolder("Données")
	uid := c.AddMessage("Données", testMessage(1), `\Seen`)
	if uid == 0 {
		t.Fatal("append returned UID 0")
	}
	if got, want := listNames(t, c), []string{"Données", "INBOX"}; !slices.Equal(got, want) {
		t.Fatalf("folders = %q, want %q", got, want)
	}
	if got := fetchAll(t, c, "Données"); !bytes.Equal(got[uid], testMessage(1)) {
		t.Fatalf("fetched %q, want the appended bytes", got[uid])
	}

	d.Stop()
	if conn, err := net.DialTimeout("tcp", d.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("server still accepts connections after Stop")
	}
	d.Start(t)
	c2 := d.Client(t, u)
	if got := fetchAll(t, c2, "Données"); !bytes.Equal(got[uid], testMessage(1)) {
		t.Fatal("message lost across restart")
	}
}

func TestDovecotWriteMaildir(t *testing.T) {
	d := StartDovecot(t)
	u := d.AddUser(t, "bob", "pw")
	files := []MailFile{
		{Folder: "", Flags: "S", Raw: testMessage(1)},
		{Folder: "INBOX", Flags: "SF", Raw: testMessage(2), Date: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{Folder: "Archive.2024", Raw: testMessage(3)},
		{Folder: "Données", Flags: "R", Raw: testMessage(4)},
	}
	if n := d.WriteMaildir(t, u, slices.Values(files)); n != len(files) {
		t.Fatalf("wrote %d files, want %d", n, len(files))
	}
	c := d.Client(t, u)
	if got, want := listNames(t, c), []string{"Archive", "Archive.2024", "Données", "INBOX"}; !slices.Equal(got, want) {
		t.Fatalf("folders = %q, want %q", got, want)
	}
	inbox := fetchAll(t, c, "INBOX")
	if len(inbox) != 2 {
		t.Fatalf("INBOX has %d messages, want 2", len(inbox))
	}
	for _, want := range [][]byte{testMessage(1), testMessage(2)} {
		found := false
		for _, got := range inbox {
			found = found || bytes.Equal(got, want)
		}
		if !found {
			t.Errorf("INBOX lacks %q", want)
		}
	}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var sawFlagged bool
	for _, m := range msgs {
		if slices.Contains(m.Flags, imap.FlagFlagged) {
			sawFlagged = true
			if !slices.Contains(m.Flags, imap.FlagSeen) || !m.InternalDate.Equal(files[1].Date) {
				t.Errorf("flagged message: flags %v date %v, want \\Seen and %v", m.Flags, m.InternalDate, files[1].Date)
			}
		}
	}
	if !sawFlagged {
		t.Error("no \\Flagged message in INBOX")
	}
	if got := fetchAll(t, c, "Données"); len(got) != 1 {
		t.Errorf("Données has %d messages, want 1", len(got))
	}
}

func TestMemServer(t *testing.T) {
	s := StartMemServer(t)
	u, err := s.AddUser("carol", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFolder(u.Login, "Données"); err != nil {
		t.Fatal(err)
	}
	uid, err := s.Append(u.Login, "Données", testMessage(7), time.Time{}, `\Flagged`)
	if err != nil {
		t.Fatal(err)
	}
	c := DialClient(t, s.Addr(), u)
	if got, want := listNames(t, c), []string{"Données", "INBOX"}; !slices.Equal(got, want) {
		t.Fatalf("folders = %q, want %q", got, want)
	}
	if got := fetchAll(t, c, "Données"); !bytes.Equal(got[uid], testMessage(7)) {
		t.Fatalf("fetched %q", got[uid])
	}
	if _, err := s.AddUser("carol", "again"); err == nil {
		t.Error("adding a user twice succeeded")
	}
}
