// Command syncbench times mailsync's sync engine side by side with mbsync on one generated
// mailbox served by a private Dovecot on loopback.
//
//	go run ./bench/syncbench [-messages 20000] [-seed 1] [-runs 3] [-dir DIR] [-only raw,mbsync,mailsync]
//
// It writes the corpus with mailgen (cached in DIR between runs), starts its own Dovecot with a
// config of its own, installs isync (mbsync) from Debian when it is missing, then measures, each
// as a separate process so that wall time and peak RSS are comparable:
//
//	raw-floor         one connection, UID FETCH 1:* BODY.PEEK[] of every folder, bytes discarded
//	mbsync-full       mbsync (FSync no) into an empty Maildir
//	mbsync-nochange   mbsync again, nothing changed
//	mailsync-full     a first sync into an empty SQLite database (the real worker and syncer)
//	mailsync-nochange the same again, nothing changed
//
// Every row is the median of -runs runs after one warm-up run (the first run also builds
// Dovecot's index). Needs root: Dovecot's mail processes run as a system user it creates.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailsync/internal/mailgen"
)

const (
	login    = "bench"
	password = "bench"
	mailUser = "mailsync-vmail"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "child-sync":
			os.Exit(childSync(os.Args[2:]))
		case "child-raw":
			os.Exit(childRaw(os.Args[2:]))
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

type config struct {
	messages int
	seed     int64
	runs     int
	dir      string
	only     map[string]bool
}

func run() error {
	var c config
	var only string
	flag.IntVar(&c.messages, "messages", 20000, "messages in the corpus")
	flag.Int64Var(&c.seed, "seed", 1, "corpus seed")
	flag.IntVar(&c.runs, "runs", 3, "measured runs per row (after one warm-up)")
	flag.StringVar(&c.dir, "dir", filepath.Join(os.TempDir(), "mailsync-syncbench"), "work directory (the corpus is kept there)")
	flag.StringVar(&only, "only", "raw,mbsync,mailsync", "rows to run")
	flag.Parse()
	c.only = map[string]bool{}
	for _, o := range strings.Split(only, ",") {
		c.only[strings.TrimSpace(o)] = true
	}

	base := filepath.Join(c.dir, fmt.Sprintf("m%d-s%d", c.messages, c.seed))
	stats, err := corpus(base, c)
	if err != nil {
		return err
	}
	fmt.Printf("corpus: %d messages, %d MB, %d folders\n", stats.messages, stats.bytes>>20, stats.folders)
	d, err := startDovecot(base)
	if err != nil {
		return err
	}
	defer d.stop()
	fmt.Printf("dovecot on %s; %d runs per row after one warm-up\n", d.addr(), c.runs)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	port := strconv.Itoa(d.port)
	results := map[string]result{}
	measure := func(name string, setup func() error, argv ...string) error {
		r, err := measureRuns(c.runs, setup, argv...)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results[name] = r
		fmt.Printf("%-18s %8.3f s   (runs %s)   peak RSS %4d MiB\n", name, r.median.Seconds(), r.all, r.rss>>20)
		return nil
	}
	nothing := func() error { return nil }

	if c.only["raw"] {
		if err := measure("raw-floor", nothing, self, "child-raw", "127.0.0.1", port); err != nil {
			return err
		}
	}
	if c.only["mbsync"] {
		if err := ensureMbsync(); err != nil {
			return err
		}
		rc, maildir := filepath.Join(base, "mbsyncrc"), filepath.Join(base, "mbsync")
		if err := writeMbsyncrc(rc, maildir, d.port); err != nil {
			return err
		}
		fresh := func() error {
			if err := os.RemoveAll(maildir); err != nil {
				return err
			}
			return os.MkdirAll(maildir, 0o755)
		}
		if err := measure("mbsync-full", fresh, "mbsync", "-q", "-c", rc, "-a"); err != nil {
			return err
		}
		if err := measure("mbsync-nochange", nothing, "mbsync", "-q", "-c", rc, "-a"); err != nil {
			return err
		}
	}
	if c.only["mailsync"] {
		db := filepath.Join(base, "mailsync", "mailsync.db")
		fresh := func() error { return os.RemoveAll(filepath.Dir(db)) }
		args := []string{self, "child-sync", "sqlite:" + db, "127.0.0.1", port}
		if err := measure("mailsync-full", fresh, args...); err != nil {
			return err
		}
		if err := measure("mailsync-nochange", nothing, args...); err != nil {
			return err
		}
	}
	ratio := func(a, b string) string {
		ra, oka := results[a]
		rb, okb := results[b]
		if !oka || !okb {
			return "n/a"
		}
		return fmt.Sprintf("%.3f", ra.median.Seconds()/rb.median.Seconds())
	}
	fmt.Printf("ratios: mailsync-full/mbsync-full %s   mailsync-full/raw-floor %s   mailsync-nochange/mbsync-nochange %s\n",
		ratio("mailsync-full", "mbsync-full"), ratio("mailsync-full", "raw-floor"), ratio("mailsync-nochange", "mbsync-nochange"))
	return nil
}

type result struct {
	median time.Duration
	all    string
	rss    int64 // bytes, the highest of the measured runs
}

// measureRuns runs argv runs+1 times (setup before each), drops the first, and returns the median
// wall time and the peak RSS.
func measureRuns(runs int, setup func() error, argv ...string) (result, error) {
	var (
		walls []time.Duration
		r     result
	)
	for i := 0; i <= runs; i++ {
		if err := setup(); err != nil {
			return r, err
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return r, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		wall := time.Since(start)
		if i == 0 {
			continue
		}
		walls = append(walls, wall)
		r.rss = max(r.rss, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss*1024)
	}
	strs := make([]string, len(walls))
	for i, w := range walls {
		strs[i] = fmt.Sprintf("%.3f", w.Seconds())
	}
	r.all = strings.Join(strs, " ")
	slices.Sort(walls)
	r.median = walls[len(walls)/2]
	return r, nil
}

type corpusStats struct {
	messages, folders int
	bytes             int64
}

// corpus writes the Maildir once and remembers its stats in a marker file.
func corpus(base string, c config) (corpusStats, error) {
	marker := filepath.Join(base, "corpus.txt")
	var s corpusStats
	if b, err := os.ReadFile(marker); err == nil {
		if _, err := fmt.Sscan(string(b), &s.messages, &s.bytes, &s.folders); err == nil {
			return s, nil
		}
	}
	if err := os.RemoveAll(base); err != nil {
		return s, err
	}
	fmt.Printf("writing %d messages under %s ...\n", c.messages, base)
	stats, err := mailgen.WriteMaildir(filepath.Join(base, "home", "Maildir"), mailgen.Options{Seed: c.seed, Messages: c.messages})
	if err != nil {
		return s, err
	}
	s = corpusStats{messages: stats.Messages, bytes: stats.Bytes, folders: len(stats.Folders)}
	return s, os.WriteFile(marker, fmt.Appendf(nil, "%d %d %d\n", s.messages, s.bytes, s.folders), 0o644)
}

// dovecot is a private Dovecot serving base/home as the mailbox of one user.
type dovecot struct {
	cmd  *exec.Cmd
	port int
}

func (d *dovecot) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port)) }

func (d *dovecot) stop() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	d.cmd.Wait()
}

func startDovecot(base string) (*dovecot, error) {
	if _, err := exec.LookPath("dovecot"); err != nil {
		if err := aptInstall("dovecot-imapd"); err != nil {
			return nil, err
		}
	}
	uid, gid, err := ensureMailUser()
	if err != nil {
		return nil, err
	}
	run, err := os.MkdirTemp("", "syncbench-dovecot-") // short: unix socket paths are limited
	if err != nil {
		return nil, err
	}
	home := filepath.Join(base, "home")
	if err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), home).Run(); err != nil {
		return nil, fmt.Errorf("chown %s: %w", home, err)
	}
	for _, p := range []string{filepath.Dir(base), base} {
		os.Chmod(p, 0o755)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	passwd := filepath.Join(base, "passwd")
	if err := os.WriteFile(passwd, fmt.Appendf(nil, "%s:{PLAIN}%s::::%s::\n", login, password, home), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(base, "dovecot.conf")
	if err := os.MkdirAll(filepath.Join(base, "state"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, dovecotConf, run, base, uid, gid, port, passwd), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/sbin/dovecot", "-F", "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &dovecot{cmd: cmd, port: port}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", d.addr()); err == nil {
			c.Close()
			return d, nil
		}
	}
	d.stop()
	return nil, fmt.Errorf("dovecot did not answer on %s; see %s/dovecot.log", d.addr(), base)
}

const dovecotConf = `# Written by mailsync's syncbench: a private, plain-text, loopback-only IMAP server.
protocols = imap
listen = 127.0.0.1
base_dir = %[1]s
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_uid = %[3]d
mail_gid = %[4]d
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:~/Maildir
mail_fsync = never
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]d
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[6]s
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[6]s
}
`

func ensureMailUser() (uid, gid int, err error) {
	lookup := func() (int, int, error) {
		u, err := user.Lookup(mailUser)
		if err != nil {
			return 0, 0, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid, nil
	}
	if uid, gid, err := lookup(); err == nil {
		return uid, gid, nil
	}
	out, addErr := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", mailUser).CombinedOutput()
	if uid, gid, err := lookup(); err == nil {
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("create system user %s (are we root?): %v: %s", mailUser, addErr, out)
}

func ensureMbsync() error {
	if _, err := exec.LookPath("mbsync"); err == nil {
		return nil
	}
	return aptInstall("isync")
}

func aptInstall(pkg string) error {
	fmt.Printf("installing %s ...\n", pkg)
	if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v: %s", err, out)
	}
	cmd := exec.Command("apt-get", "install", "-y", "-qq", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %v: %s", pkg, err, out)
	}
	return nil
}

func writeMbsyncrc(path, maildir string, port int) error {
	rc := fmt.Sprintf(`FSync no

IMAPAccount bench
Host 127.0.0.1
Port %d
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
`, port, login, password, maildir, maildir)
	return os.WriteFile(path, []byte(rc), 0o600)
}

// childRaw is the raw floor: LOGIN, LIST, then EXAMINE and UID FETCH 1:* BODY.PEEK[] of every
// folder on one connection, every byte read and discarded.
func childRaw(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: child-raw HOST PORT")
		return 2
	}
	if err := rawFetch(net.JoinHostPort(args[0], args[1])); err != nil {
		fmt.Fprintln(os.Stderr, "raw:", err)
		return 1
	}
	return 0
}

func rawFetch(addr string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 1<<16)
	if _, err := r.ReadString('\n'); err != nil {
		return err
	}
	fmt.Fprintf(conn, "a LOGIN %s %s\r\nb LIST \"\" *\r\n", login, password)
	var folders []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "b ") {
			break
		}
		if rest, ok := strings.CutPrefix(line, "* LIST "); ok && !strings.Contains(strings.ToLower(rest), `\noselect`) {
			// (attrs) "delim" name: the name is the rest after the delimiter, sent back verbatim.
			if _, after, ok := strings.Cut(rest, ") "); ok {
				if _, name, ok := strings.Cut(after, " "); ok {
					folders = append(folders, strings.TrimRight(name, "\r\n"))
				}
			}
		}
	}
	var cmds strings.Builder
	for i, f := range folders {
		fmt.Fprintf(&cmds, "e%d EXAMINE %s\r\nf%d UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])\r\n", i, f, i)
	}
	cmds.WriteString("z LOGOUT\r\n")
	if _, err := io.WriteString(conn, cmds.String()); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
