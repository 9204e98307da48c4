package imaptest

import "github.com/emersion/go-imap/v2"

// CopiesOf returns the flags of each message of folder whose Message-ID header is messageID: one
// entry per copy, none when the folder holds no such message. It is what the server holds now,
// to check what an action on mail did: the folder is selected again at every call, so that the
// answer is not this session's view of it from before.
func (c *Client) CopiesOf(folder, messageID string) [][]string {
	c.tb.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		c.tb.Fatalf("imaptest: select %q: %v", folder, err)
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: messageID}}}, nil).Wait()
	if err != nil {
		c.tb.Fatalf("imaptest: search %q for %s: %v", folder, messageID, err)
	}
	uids := found.AllUIDs()
	if len(uids) == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		c.tb.Fatalf("imaptest: fetch flags in %q: %v", folder, err)
	}
	out := make([][]string, 0, len(msgs))
	for _, m := range msgs {
		flags := []string{}
		for _, f := range m.Flags {
			flags = append(flags, string(f))
		}
		out = append(out, flags)
	}
	return out
}
