package imapconn_test

import (
	"context"
	"testing"

	"mailsync/internal/imapconn"
)

// BenchmarkFetchBodies streams a 2,000-message INBOX (~27 MB, the average message size of the
// reference 20k/271 MB mailbox) from a private Dovecot on loopback.
func BenchmarkFetchBodies(b *testing.B) {
	const n, size = 2000, 13 << 10
	d, u := bigMailbox(b, n, size)
	c := dial(b, config(d, u))
	ctx := context.Background()
	if _, err := c.Select(ctx, "INBOX", c.Caps().CondStore); err != nil {
		b.Fatal(err)
	}
	fetch := func() int64 {
		var total int64
		count := 0
		err := c.FetchBodies(ctx, imapconn.UIDsFrom(1), func(m imapconn.Message) error {
			total += int64(len(m.Raw))
			count++
			return nil
		})
		if err != nil || count != n {
			b.Fatalf("fetched %d messages: %v", count, err)
		}
		return total
	}
	b.SetBytes(fetch()) // also warms Dovecot's index and cache
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fetch()
	}
}
