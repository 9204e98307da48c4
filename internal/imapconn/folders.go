package imapconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Folder is one mailbox as LIST reports it.
type Folder struct {
	// Name is the full name, decoded to UTF-8 (go-imap decodes modified UTF-7), exactly as the
	// server spells it: pass it back unchanged to Select and Status.
	Name       string
	Delimiter  rune     // hierarchy separator; 0 if the server has none
	Attributes []string // e.g. \HasNoChildren, \Sent, \Noselect
	NoSelect   bool     // \Noselect or \NonExistent: a node of the hierarchy, holds no messages
	// Status is the folder's status. A zero UIDValidity means the server reported none
	// (a NoSelect folder, or one that vanished between LIST and STATUS).
	Status Status
	// Undecodable says that the server spelled the name in invalid modified UTF-7 (RFC 3501
	// §5.1.3; a bare "&" is the usual case): Name holds the raw characters, which this client
	// cannot send back, so the folder cannot be selected. Its Status is what LIST-STATUS said.
	Undecodable bool
}

// Status is the per-folder checkpoint data.
type Status struct {
	UIDValidity   uint32
	UIDNext       uint32
	Messages      uint32
	HighestModSeq uint64 // 0 if the server does not report it (no CONDSTORE)
	// MailboxID is the folder's RFC 8474 MAILBOXID, "" when unknown. Only Select reports it
	// (see objectid.go): a LIST or STATUS answer never has it.
	MailboxID string
}

// ListFolders lists every folder with its status: one round trip with LIST-STATUS, else LIST and
// then pipelined STATUS commands.
func (c *Conn) ListFolders(ctx context.Context) ([]Folder, error) {
	const op = "list folders"
	g, err := c.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	var opts *imap.ListOptions
	if c.caps.ListStatus {
		opts = &imap.ListOptions{ReturnStatus: c.statusOptions()}
	}
	cmd := c.client.List("", "*", opts)
	var folders []Folder
	for data := cmd.Next(); data != nil; data = cmd.Next() {
		if len(folders) == c.cfg.Limits.MaxFolders {
			err := &LimitError{What: fmt.Sprintf("listed more than %d folders (the folder limit)", c.cfg.Limits.MaxFolders)}
			g.disarm()
			c.abort(err)
			cmd.Close()
			return nil, c.fail(op, err)
		}
		g.progress()
		f := folderFrom(data)
		f.Undecodable = c.isRawName(f.Name)
		folders = append(folders, f)
	}
	if err := c.end(g, op, cmd.Close()); err != nil {
		return nil, err
	}
	if c.caps.ListStatus {
		return folders, nil
	}
	if err := c.statusAll(ctx, folders); err != nil {
		return nil, err
	}
	return folders, nil
}

// statusAll fills in the status of every selectable folder, sending all STATUS commands before
// waiting for the first answer: N folders cost about one round trip, not N.
func (c *Conn) statusAll(ctx context.Context, folders []Folder) error {
	const op = "status of every folder"
	g, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	type pending struct {
		i   int
		cmd interface {
			Wait() (*imap.StatusData, error)
		}
	}
	var cmds []pending
	for i := range folders {
		if !folders[i].NoSelect && !folders[i].Undecodable {
			cmds = append(cmds, pending{i, c.client.Status(folders[i].Name, c.statusOptions())})
		}
	}
	var firstErr error
	for _, p := range cmds {
		data, err := p.cmd.Wait()
		g.progress()
		if err != nil {
			var se *imap.Error
			if errors.As(err, &se) {
				// The folder vanished or cannot be opened: report it without status and let the
				// caller skip it, rather than failing the whole listing.
				c.log.Debug("imap status failed", "folder", folders[p.i].Name, "err", err)
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		folders[p.i].Status = statusFrom(data)
	}
	return c.end(g, op, firstErr)
}

// Status returns one folder's status without selecting it.
func (c *Conn) Status(ctx context.Context, name string) (Status, error) {
	op := fmt.Sprintf("status of %q", name)
	g, err := c.begin(ctx, op)
	if err != nil {
		return Status{}, err
	}
	data, err := c.client.Status(name, c.statusOptions()).Wait()
	if err := c.end(g, op, err); err != nil {
		return Status{}, err
	}
	return statusFrom(data), nil
}

// Select opens a folder read-only (EXAMINE: fetching bodies with BODY.PEEK never changes \Seen
// anyway). It always asks the server, even when the folder is selected already (read-write after
// a write, say): its answer is the folder's current status. With condstore, it asks for HIGHESTMODSEQ; only set it when Caps().CondStore is true.
func (c *Conn) Select(ctx context.Context, name string, condstore bool) (Status, error) {
	op := fmt.Sprintf("select %q", name)
	g, err := c.begin(ctx, op)
	if err != nil {
		return Status{}, err
	}
	if c.caps.ObjectID {
		c.tap.arm()
	}
	c.sel = selection{} // a failed SELECT leaves no folder selected
	data, err := c.client.Select(name, &imap.SelectOptions{ReadOnly: true, CondStore: condstore}).Wait()
	var mailboxID string
	if c.caps.ObjectID {
		mailboxID = c.tap.take()
	}
	if err := c.end(g, op, err); err != nil {
		return Status{}, noteMissing(err)
	}
	c.sel = selection{name: name}
	return Status{
		UIDValidity:   data.UIDValidity,
		UIDNext:       uint32(data.UIDNext),
		Messages:      data.NumMessages,
		HighestModSeq: data.HighestModSeq,
		MailboxID:     mailboxID,
	}, nil
}

func (c *Conn) statusOptions() *imap.StatusOptions {
	return &imap.StatusOptions{
		NumMessages:   true,
		UIDNext:       true,
		UIDValidity:   true,
		HighestModSeq: c.caps.CondStore,
	}
}

func folderFrom(data *imap.ListData) Folder {
	f := Folder{Name: data.Mailbox, Delimiter: data.Delim}
	for _, attr := range data.Attrs {
		f.Attributes = append(f.Attributes, string(attr))
		if strings.EqualFold(string(attr), string(imap.MailboxAttrNoSelect)) ||
			strings.EqualFold(string(attr), string(imap.MailboxAttrNonExistent)) {
			f.NoSelect = true
		}
	}
	if data.Status != nil {
		f.Status = statusFrom(data.Status)
	}
	return f
}

func statusFrom(data *imap.StatusData) Status {
	s := Status{
		UIDValidity:   data.UIDValidity,
		UIDNext:       uint32(data.UIDNext),
		HighestModSeq: data.HighestModSeq,
	}
	if data.NumMessages != nil {
		s.Messages = *data.NumMessages
	}
	return s
}
