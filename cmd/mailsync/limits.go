package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"mailsync/internal/imapconn"
)

// LimitFlags bound what an account's IMAP server can make mailsync hold or wait for: the server
// is whoever the account's owner points it at (see the README's Security section).
type LimitFlags struct {
	MaxMessageSize  byteSize      `name:"max-message-size" env:"MAILSYNC_MAX_MESSAGE_SIZE" default:"100MiB" help:"Largest message fetched; a larger one is skipped and named in the sync's result."`
	MaxResponseSize byteSize      `name:"max-response-size" env:"MAILSYNC_MAX_RESPONSE_SIZE" default:"16MiB" help:"Largest IMAP response outside message bodies (a LIST line with its literals); a larger one fails the sync."`
	MaxFolders      int           `name:"max-folders" env:"MAILSYNC_MAX_FOLDERS" default:"10000" help:"Most folders an account's LIST may return; more fails the sync."`
	CommandDeadline time.Duration `name:"imap-command-deadline" env:"MAILSYNC_IMAP_COMMAND_DEADLINE" default:"10m" help:"Longest any IMAP command other than a body fetch may run in total, progress or not."`
}

func (f LimitFlags) limits() imapconn.Limits {
	return imapconn.Limits{
		MaxMessageSize:  int64(f.MaxMessageSize),
		MaxResponseSize: int64(f.MaxResponseSize),
		MaxFolders:      f.MaxFolders,
		CommandDeadline: f.CommandDeadline,
	}
}

// byteSize is a size in bytes written as a number with an optional unit: 100MiB, 512KiB, 1GiB,
// 1048576.
type byteSize int64

func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", text)
	}
	*b = byteSize(n * mult)
	return nil
}
