package mailgen_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailsync/internal/mailgen"
)

func TestWriteMaildir(t *testing.T) {
	dir := t.TempDir()
	opts := mailgen.Options{Seed: 5, Messages: 400}
	stats, err := mailgen.WriteMaildir(dir, opts)
	if err != nil {
		t.Fatalf("WriteMaildir: %v", err)
	}
	if stats.Messages != opts.Messages {
		t.Errorf("Stats.Messages = %d, want %d", stats.Messages, opts.Messages)
	}

	onDisk := map[string]string{
		"INBOX": ".", "Sent": ".Sent", "Archive": ".Archive", "Archive/2024": ".Archive.2024",
		"已发送": ".&XfJT0ZAB-", "Données": ".Donn&AOk-es",
	}
	name := regexp.MustCompile(`^\d+\.M\d+P\d+\.mailgen,S=(\d+):2,(D?F?R?S?T?)$`)
	var files int
	var bytesOnDisk int64
	for folder, rel := range onDisk {
		for _, sub := range []string{"new", "tmp"} {
			entries, err := os.ReadDir(filepath.Join(dir, rel, sub))
			if err != nil || len(entries) != 0 {
				t.Errorf("%s/%s: %d entries, err %v; want an empty directory", rel, sub, len(entries), err)
			}
		}
		entries, err := os.ReadDir(filepath.Join(dir, rel, "cur"))
		if err != nil {
			t.Fatalf("folder %q: %v", folder, err)
		}
		if len(entries) != stats.Folders[folder] {
			t.Errorf("folder %q: %d files, Stats says %d", folder, len(entries), stats.Folders[folder])
		}
		for _, e := range entries {
			files++
			m := name.FindStringSubmatch(e.Name())
			if m == nil {
				t.Errorf("file name %q is not <unique>:2,<flags>", e.Name())
				continue
			}
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if size, _ := strconv.ParseInt(m[1], 10, 64); size != info.Size() {
				t.Errorf("%s: S=%d but the file has %d bytes", e.Name(), size, info.Size())
			}
			bytesOnDisk += info.Size()
		}
	}
	if files != opts.Messages {
		t.Errorf("%d message files, want %d", files, opts.Messages)
	}
	if bytesOnDisk != stats.Bytes {
		t.Errorf("%d bytes on disk, Stats says %d", bytesOnDisk, stats.Bytes)
	}
	subs, err := os.ReadFile(filepath.Join(dir, "subscriptions"))
	const wantSubs = "V\t2\n\nINBOX\nSent\nArchive\nArchive\t2024\n&XfJT0ZAB-\nDonn&AOk-es\n"
	if err != nil || string(subs) != wantSubs {
		t.Errorf("subscriptions file: %q, %v; want %q", subs, err, wantSubs)
	}
}

// TestWriteMaildirMatchesGenerate checks that a file holds the exact bytes, flags and delivery
// date (as mtime) Generate gives for its message.
func TestWriteMaildirMatchesGenerate(t *testing.T) {
	dir := t.TempDir()
	opts := mailgen.Options{Seed: 9, Messages: 30, Folders: []string{"INBOX"}}
	if _, err := mailgen.WriteMaildir(dir, opts); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[string]os.DirEntry{}
	index := regexp.MustCompile(`\.M(\d+)P`)
	for _, e := range entries {
		byIndex[index.FindStringSubmatch(e.Name())[1]] = e
	}
	err = mailgen.Generate(opts, func(m mailgen.Mail) error {
		e, ok := byIndex[strconv.Itoa(m.Index)]
		if !ok {
			t.Errorf("no file for message %d", m.Index)
			return nil
		}
		raw, err := os.ReadFile(filepath.Join(dir, "cur", e.Name()))
		if err != nil {
			return err
		}
		if string(raw) != string(m.Raw) {
			t.Errorf("message %d: file bytes differ from Generate's", m.Index)
		}
		want := ""
		for _, f := range []struct{ letter, flag string }{{"F", `\Flagged`}, {"R", `\Answered`}, {"S", `\Seen`}} {
			if slices.Contains(m.Flags, f.flag) {
				want += f.letter
			}
		}
		if !strings.HasSuffix(e.Name(), ":2,"+want) {
			t.Errorf("message %d: file %q, want flags %q for %v", m.Index, e.Name(), want, m.Flags)
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !info.ModTime().Equal(m.Date) {
			t.Errorf("message %d: mtime %v, want the delivery date %v", m.Index, info.ModTime(), m.Date)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
