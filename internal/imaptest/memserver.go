package imaptest

import (
	"testing"

	"mailsync/internal/memimap"
)

// StartMemServer starts an in-memory IMAP server on a free loopback port, closed when the test
// ends.
func StartMemServer(tb testing.TB, opts ...memimap.Option) *memimap.Server {
	tb.Helper()
	s := memimap.New(opts...)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
