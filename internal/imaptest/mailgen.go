package imaptest

import (
	"testing"

	"mailsync/internal/mailgen"
)

// WriteMailgen writes a generated corpus straight into u's Maildir++ (mailgen's own Maildir
// writer: the fastest way to a big mailbox) and hands the files to the mail user.
func (d *Dovecot) WriteMailgen(tb testing.TB, u User, opts mailgen.Options) mailgen.Stats {
	tb.Helper()
	root := d.MaildirPath(u)
	stats, err := mailgen.WriteMaildir(root, opts)
	if err != nil {
		tb.Fatalf("imaptest: write corpus for %s: %v", u.Login, err)
	}
	if err := d.srv.Own(root); err != nil {
		tb.Fatalf("imaptest: write corpus for %s: %v", u.Login, err)
	}
	return stats
}
