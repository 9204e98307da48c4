package imaptest

import (
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Client is a logged-in go-imap client for changing a test server's mailboxes behind the back of
// the code under test. The embedded *imapclient.Client gives every IMAP command; the helper
// methods fail the test on error and must be called from the test's goroutine.
type Client struct {
	*imapclient.Client
	tb testing.TB
}

// Client returns a client logged in as u, closed when the test ends.
func (d *Dovecot) Client(tb testing.TB, u User) *Client {
	tb.Helper()
	return DialClient(tb, d.Addr(), u)
}

// DialClient connects in plain text to addr and logs in as u. The client is closed when the test
// ends.
func DialClient(tb testing.TB, addr string, u User) *Client {
	tb.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		tb.Fatalf("imaptest: dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	if err := c.Login(u.Login, u.Password).Wait(); err != nil {
		tb.Fatalf("imaptest: login to %s as %s: %v", addr, u.Login, err)
	}
	return &Client{Client: c, tb: tb}
}

// AddMessage appends raw to folder with the given flags and returns its UID (the server must
// support UIDPLUS; Dovecot and the in-memory server do).
func (c *Client) AddMessage(folder string, raw []byte, flags ...string) uint32 {
	c.tb.Helper()
	return c.AddMessageAt(folder, raw, time.Time{}, flags...)
}

// AddMessageAt is AddMessage with an explicit internal date (zero means now).
func (c *Client) AddMessageAt(folder string, raw []byte, date time.Time, flags ...string) uint32 {
	c.tb.Helper()
	cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: imapFlags(flags), Time: date})
	if _, err := cmd.Write(raw); err != nil {
		c.tb.Fatalf("imaptest: append to %q: %v", folder, err)
	}
	if err := cmd.Close(); err != nil {
		c.tb.Fatalf("imaptest: append to %q: %v", folder, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		c.tb.Fatalf("imaptest: append to %q: %v", folder, err)
	}
	return uint32(data.UID)
}

// FolderCounts returns how many messages each folder holds, by LIST and STATUS: what the server
// says, to compare with what a sync copied.
func (c *Client) FolderCounts() map[string]int {
	c.tb.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		c.tb.Fatalf("imaptest: list: %v", err)
	}
	counts := map[string]int{}
	for _, f := range list {
		st, err := c.Status(f.Mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			c.tb.Fatalf("imaptest: status %q: %v", f.Mailbox, err)
		}
		counts[f.Mailbox] = int(*st.NumMessages)
	}
	return counts
}

// CreateFolder creates a folder.
func (c *Client) CreateFolder(name string) {
	c.tb.Helper()
	if err := c.Create(name, nil).Wait(); err != nil {
		c.tb.Fatalf("imaptest: create %q: %v", name, err)
	}
}

// DeleteFolder deletes a folder.
func (c *Client) DeleteFolder(name string) {
	c.tb.Helper()
	if err := c.Delete(name).Wait(); err != nil {
		c.tb.Fatalf("imaptest: delete %q: %v", name, err)
	}
}

// RenameFolder renames a folder.
func (c *Client) RenameFolder(from, to string) {
	c.tb.Helper()
	if err := c.Rename(from, to, nil).Wait(); err != nil {
		c.tb.Fatalf("imaptest: rename %q to %q: %v", from, to, err)
	}
}

// SetFlags replaces the flags of one message.
func (c *Client) SetFlags(folder string, uid uint32, flags ...string) {
	c.tb.Helper()
	c.selectFolder(folder)
	cmd := c.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{
		Op: imap.StoreFlagsSet, Silent: true, Flags: imapFlags(flags),
	}, nil)
	if err := cmd.Close(); err != nil {
		c.tb.Fatalf("imaptest: store flags of UID %d in %q: %v", uid, folder, err)
	}
}

// Expunge deletes messages for good (\Deleted, then UID EXPUNGE).
func (c *Client) Expunge(folder string, uids ...uint32) {
	c.tb.Helper()
	c.selectFolder(folder)
	set := imap.UIDSet{}
	for _, uid := range uids {
		set.AddNum(imap.UID(uid))
	}
	store := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
	if err := store.Close(); err != nil {
		c.tb.Fatalf("imaptest: flag %v deleted in %q: %v", uids, folder, err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		c.tb.Fatalf("imaptest: expunge %v from %q: %v", uids, folder, err)
	}
}

func (c *Client) selectFolder(folder string) {
	c.tb.Helper()
	if mbox := c.Mailbox(); mbox != nil && mbox.Name == folder {
		return
	}
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		c.tb.Fatalf("imaptest: select %q: %v", folder, err)
	}
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// ServerMessage is one message as the server has it.
type ServerMessage struct {
	UID       uint32
	Flags     []string // sorted, \Recent left out
	MessageID string   // the envelope's Message-ID, with its angle brackets
	Subject   string
}

// Messages returns every message of folder by UID, with its flags and envelope: the server's
// state, to compare with the store's.
func (c *Client) Messages(folder string) []ServerMessage {
	c.tb.Helper()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		c.tb.Fatalf("imaptest: examine %q: %v", folder, err)
	}
	defer func() { _ = c.Unselect().Wait() }() // the next command selects again anyway
	var all imap.UIDSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		c.tb.Fatalf("imaptest: fetch %q: %v", folder, err)
	}
	out := make([]ServerMessage, 0, len(msgs))
	for _, m := range msgs {
		sm := ServerMessage{UID: uint32(m.UID)}
		for _, f := range m.Flags {
			if f != "\\Recent" {
				sm.Flags = append(sm.Flags, string(f))
			}
		}
		slices.Sort(sm.Flags)
		if m.Envelope != nil {
			sm.MessageID, sm.Subject = "<"+m.Envelope.MessageID+">", m.Envelope.Subject
		}
		out = append(out, sm)
	}
	slices.SortFunc(out, func(a, b ServerMessage) int { return int(a.UID) - int(b.UID) })
	return out
}

// AddFlags adds flags to one message (+FLAGS), leaving its others.
func (c *Client) AddFlags(folder string, uid uint32, flags ...string) {
	c.tb.Helper()
	c.selectFolder(folder)
	cmd := c.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{
		Op: imap.StoreFlagsAdd, Silent: true, Flags: imapFlags(flags),
	}, nil)
	if err := cmd.Close(); err != nil {
		c.tb.Fatalf("imaptest: add flags to UID %d in %q: %v", uid, folder, err)
	}
}
