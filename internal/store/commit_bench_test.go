package store_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/store"
	"mailsync/internal/store/storetest"
	"mailsync/internal/task"
)

// BenchmarkFirstSyncCommits commits a first sync's batches (40 of 500 messages of 13 kB) and
// their changes, for each number of change rows per INSERT: what the change log costs the
// writer against writing none ("off"), and what its statement size buys (go test -bench
// FirstSyncCommits ./internal/store).
func BenchmarkFirstSyncCommits(b *testing.B) {
	for _, d := range storetest.Dialects {
		for _, rows := range []int{0, 1, 16, 32, 64, 256} { // 0: no change log
			name := fmt.Sprintf("%s/rows=%d", d, rows)
			if rows == 0 {
				name = d + "/off"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				raw := make([]byte, 13<<10)
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					s := storetest.Open(b, d)
					if rows == 0 {
						store.WriteNoChanges(s)
					} else {
						store.SetChangeRows(s, rows)
					}
					m, err := task.NewManager(s, task.DefaultConfig())
					if err != nil {
						b.Fatal(err)
					}
					acct := storetest.SeedAccount(b, s)
					if _, _, err := m.Start(ctx, acct.ID, false); err != nil {
						b.Fatal(err)
					}
					tk, _, err := m.ClaimAccount(ctx, "bench", acct.ID)
					if err != nil {
						b.Fatal(err)
					}
					var before, after syscall.Rusage
					_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
					b.StartTimer()
					for n := range 40 {
						bt := store.Batch{Folder: store.Folder{AccountID: acct.ID, Name: "INBOX", UIDValidity: 1, UIDNext: uint32(n*500 + 501)}}
						for i := range 500 {
							uid := uint32(n*500 + i + 1)
							bt.Messages = append(bt.Messages, store.Message{UID: uid, MessageID: fmt.Sprintf("<%d@bench>", uid),
								Subject: "a subject of some length", From: "someone@example.test", Flags: []string{`\Seen`},
								Size: int64(len(raw)), Raw: raw})
						}
						if _, err := s.CommitBatch(ctx, tk.Lease(), task.Progress{}, bt); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
					cpu += time.Duration(after.Utime.Nano() - before.Utime.Nano() + after.Stime.Nano() - before.Stime.Nano())
					b.StartTimer()
				}
				// This process's CPU time: on a shared machine a steadier measure than the wall
				// clock (PostgreSQL's own work is not in it).
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}
