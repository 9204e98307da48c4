package mailgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mailsync/internal/mutf7"
)

// Stats describes a written corpus.
type Stats struct {
	Messages int
	Bytes    int64
	// Folders counts the messages of each folder (IMAP names), including empty folders.
	Folders map[string]int
}

// WriteMaildir writes the corpus of opts under dir as a Maildir++ tree that Dovecot serves as
// is: INBOX in dir itself, every other folder in dir/.<name> with "." as the hierarchy
// separator on disk and non-ASCII names in IMAP modified UTF-7 (Données → .Donn&AOk-es). Each
// message is a file in cur/ named "<unique>:2,<flags>" with the maildir flag letters, and its
// modification time is the message's delivery date, which Dovecot reports as INTERNALDATE (and
// the file names sort by it, so UIDs follow dates). The new/ and tmp/ directories are created
// empty, and every folder is subscribed. dir may exist; existing files are not removed.
//
// Over IMAP, Dovecot's default Maildir++ namespace shows "Archive/2024" as "Archive.2024" with
// "." as the delimiter: compare folders by the server's LIST, not by Mail.Folder.
func WriteMaildir(dir string, opts Options) (Stats, error) {
	g, err := newGenerator(opts)
	if err != nil {
		return Stats{}, err
	}
	paths := make(map[string]string, len(g.folders))
	stats := Stats{Folders: make(map[string]int, len(g.folders))}
	var subscriptions strings.Builder
	subscriptions.WriteString("V\t2\n\n")
	for _, f := range g.folders {
		rel, err := maildirFolder(f)
		if err != nil {
			return Stats{}, err
		}
		p := filepath.Join(dir, rel)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o755); err != nil {
				return Stats{}, fmt.Errorf("mailgen: %w", err)
			}
		}
		paths[f] = p
		stats.Folders[f] = 0
		// Version 2 of Dovecot's subscriptions file separates hierarchy levels with a tab.
		subscriptions.WriteString(strings.ReplaceAll(mutf7.Encode(f), "/", "\t") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "subscriptions"), []byte(subscriptions.String()), 0o644); err != nil {
		return Stats{}, fmt.Errorf("mailgen: %w", err)
	}
	for i := range opts.Messages {
		m := g.mail(i)
		name := fmt.Sprintf("%d.M%dP%d.mailgen,S=%d:2,%s", m.Date.Unix(), i, uint32(g.seed), len(m.Raw), maildirFlags(m.Flags))
		path := filepath.Join(paths[m.Folder], "cur", name)
		if err := os.WriteFile(path, m.Raw, 0o644); err != nil {
			return stats, fmt.Errorf("mailgen: %w", err)
		}
		if err := os.Chtimes(path, m.Date, m.Date); err != nil {
			return stats, fmt.Errorf("mailgen: %w", err)
		}
		stats.Messages++
		stats.Bytes += int64(len(m.Raw))
		stats.Folders[m.Folder]++
	}
	return stats, nil
}

// maildirFolder returns the directory of an IMAP folder relative to the Maildir++ root.
func maildirFolder(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return ".", nil
	}
	for part := range strings.SplitSeq(name, "/") {
		if strings.Contains(part, ".") {
			return "", fmt.Errorf("mailgen: folder %q: a name part cannot contain %q in Maildir++", name, ".")
		}
	}
	return "." + strings.ReplaceAll(mutf7.Encode(name), "/", "."), nil
}

// maildirFlags maps IMAP system flags to maildir info letters, in the ASCII order the maildir
// specification requires.
func maildirFlags(flags []string) string {
	var letters [5]bool // D F R S T
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\draft`:
			letters[0] = true
		case `\flagged`:
			letters[1] = true
		case `\answered`:
			letters[2] = true
		case `\seen`:
			letters[3] = true
		case `\deleted`:
			letters[4] = true
		}
	}
	var b strings.Builder
	for i, set := range letters {
		if set {
			b.WriteByte("DFRST"[i])
		}
	}
	return b.String()
}
