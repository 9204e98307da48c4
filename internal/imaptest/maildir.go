package imaptest

import (
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsync/internal/mutf7"
)

// MailFile is one message to write straight into a Maildir++.
type MailFile struct {
	// Folder is the IMAP folder name as Dovecot shows it: UTF-8, "." between levels
	// ("Archive.2024", "Données"). "" and "INBOX" mean the inbox.
	Folder string
	// Flags are Maildir info letters: D draft, F flagged, R replied, S seen, T trashed.
	Flags string
	// Date is the internal date (the file's mtime). Zero means now.
	Date time.Time
	Raw  []byte
}

// WriteMaildir writes messages directly into u's Maildir++, which is much faster than APPEND for
// large corpora (Dovecot indexes them at the next access). It returns how many it wrote. Safe
// while the server runs; the first access to a big new folder then takes a moment.
func (d *Dovecot) WriteMaildir(tb testing.TB, u User, files iter.Seq[MailFile]) int {
	tb.Helper()
	root := d.MaildirPath(u)
	if _, err := os.Stat(root); err != nil {
		tb.Fatalf("imaptest: write maildir: unknown user %q: %v", u.Login, err)
	}

	type job struct {
		path string
		f    MailFile
	}
	jobs := make(chan job, 64)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for j := range jobs {
				if err := d.writeMailFile(j.path, j.f); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}

	folders := map[string]string{} // folder name → its directory, created
	pid := os.Getpid()
	n := 0
	var setupErr error
	for f := range files {
		dir, ok := folders[f.Folder]
		if !ok {
			dir = root
			if f.Folder != "" && !strings.EqualFold(f.Folder, "INBOX") {
				dir = filepath.Join(root, "."+mutf7.Encode(f.Folder))
			}
			if err := d.srv.MakeMaildir(dir); err != nil {
				setupErr = err
				break
			}
			folders[f.Folder] = dir
		}
		date := f.Date
		if date.IsZero() {
			date = time.Now()
		}
		f.Date = date
		name := fmt.Sprintf("%d.M%dP%d.mailsync,S=%d:2,%s", date.Unix(), d.seq.Add(1), pid, len(f.Raw), sortedFlags(f.Flags))
		jobs <- job{path: filepath.Join(dir, "cur", name), f: f}
		n++
	}
	close(jobs)
	wg.Wait()
	if setupErr != nil {
		tb.Fatalf("imaptest: write maildir: %v", setupErr)
	}
	select {
	case err := <-errs:
		tb.Fatalf("imaptest: write maildir: %v", err)
	default:
	}
	return n
}

func (d *Dovecot) writeMailFile(path string, f MailFile) error {
	if err := os.WriteFile(path, f.Raw, 0o644); err != nil {
		return err
	}
	if err := d.srv.Own(path); err != nil {
		return err
	}
	return os.Chtimes(path, f.Date, f.Date)
}

// sortedFlags puts maildir info letters in ASCII order, as the Maildir spec requires.
func sortedFlags(flags string) string {
	b := []byte(flags)
	slices.Sort(b)
	return string(slices.Compact(b))
}
