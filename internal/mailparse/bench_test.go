package mailparse_test

import (
	"sync/atomic"
	"testing"

	"mailsync/internal/mailgen"
	"mailsync/internal/mailparse"
)

// BenchmarkParse parses a realistic mix (mailgen's corpus: plain, HTML alternatives,
// attachments, legacy charsets, 1 % malformed). MB/s counts raw message bytes.
func BenchmarkParse(b *testing.B) {
	corpus, avg := benchCorpus(b)
	b.SetBytes(avg)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = mailparse.Parse(corpus[i%len(corpus)])
	}
}

// BenchmarkParseParallel is the sync's situation: one Parse per goroutine on every core.
func BenchmarkParseParallel(b *testing.B) {
	corpus, avg := benchCorpus(b)
	b.SetBytes(avg)
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = mailparse.Parse(corpus[int(next.Add(1))%len(corpus)])
		}
	})
}

// benchCorpus returns 2,000 messages of mailgen's mix and their average size.
func benchCorpus(b *testing.B) ([][]byte, int64) {
	b.Helper()
	const n = 2000
	corpus := make([][]byte, 0, n)
	var total int64
	err := mailgen.Generate(mailgen.Options{Seed: 1, Messages: n}, func(m mailgen.Mail) error {
		corpus = append(corpus, m.Raw)
		total += int64(len(m.Raw))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return corpus, total / n
}
