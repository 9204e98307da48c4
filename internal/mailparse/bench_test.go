package mailparse_test

import (
	"testing"

	"mailsync/internal/mailgen"
	"mailsync/internal/mailparse"
)

// BenchmarkParse parses a realistic mix (mailgen's corpus: plain, HTML alternatives,
// attachments, legacy charsets, 1 % malformed). MB/s counts raw message bytes.
func BenchmarkParse(b *testing.B) {
	const n = 2000
	var corpus [][]byte
	var total int64
	err := mailgen.Generate(mailgen.Options{Seed: 1, Messages: n}, func(m mailgen.Mail) error {
		corpus = append(corpus, m.Raw)
		total += int64(len(m.Raw))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total / n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, _ = mailparse.Parse(corpus[i%n])
	}
}
