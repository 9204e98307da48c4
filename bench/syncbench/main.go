// Command syncbench times mailsync's sync engine side by side with mbsync on one generated
// mailbox served by a private Dovecot on loopback.
//
//	go run ./bench/syncbench [-messages 20000] [-seed 1] [-runs 3] [-dir DIR] [-only raw,mbsync,mailsync] [-baseline BIN]
//
// It starts a private Dovecot (internal/dovecot, the tests' server; dovecot-imapd is installed
// from Debian when missing), writes the corpus with mailgen into its Maildir (cached in DIR
// between runs), installs isync (mbsync) when it is missing, then measures, each as a separate
// process so that wall time and peak RSS are comparable:
//
//	raw-floor         one connection, UID FETCH 1:* BODY.PEEK[] of every folder, bytes discarded
//	mbsync-full       mbsync (FSync no) into an empty Maildir
//	mbsync-nochange   mbsync again, nothing changed
//	mailsync-full     a first sync into an empty SQLite database (the real worker and syncer)
//	mailsync-nochange the same again, nothing changed
//
// With -baseline BIN (a syncbench binary built from another commit), baseline-full and
// baseline-nochange run that build's mailsync rows in the same rounds, right after this build's,
// and the ratios compare the two: a change is measured side by side, under the same load.
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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailsync/internal/dovecot"
	"mailsync/internal/mailgen"
)

const (
	login    = "bench"
	password = "bench"
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
	baseline string
}

func run() error {
	var c config
	var only string
	flag.IntVar(&c.messages, "messages", 20000, "messages in the corpus")
	flag.Int64Var(&c.seed, "seed", 1, "corpus seed")
	flag.IntVar(&c.runs, "runs", 3, "measured runs per row (after one warm-up)")
	flag.StringVar(&c.dir, "dir", filepath.Join(os.TempDir(), "mailsync-syncbench"), "work directory (the corpus is kept there)")
	flag.StringVar(&only, "only", "raw,mbsync,mailsync", "rows to run")
	flag.StringVar(&c.baseline, "baseline", "", "a syncbench binary built from another commit: its mailsync rows run beside this build's")
	flag.Parse()
	c.only = map[string]bool{}
	for _, o := range strings.Split(only, ",") {
		c.only[strings.TrimSpace(o)] = true
	}

	base := filepath.Join(c.dir, fmt.Sprintf("m%d-s%d", c.messages, c.seed))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	if _, err := dovecot.Path(); err != nil {
		if err := aptInstall("dovecot-imapd"); err != nil {
			return err
		}
	}
	d, err := dovecot.Start(base, dovecot.Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	stats, err := corpus(d, base, c)
	if err != nil {
		return err
	}
	fmt.Printf("corpus: %d messages, %d MB, %d folders\n", stats.messages, stats.bytes>>20, stats.folders)
	fmt.Printf("dovecot on %s; %d runs per row after one warm-up\n", d.Addr(), c.runs)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	port := strconv.Itoa(d.Port())
	nothing := func() error { return nil }
	// Rows run in rounds, one run of each row per round, so that load from elsewhere on the
	// machine hits them alike. The no-change rows need the full rows' result: a phase of their own.
	var full, nochange []row
	if c.only["raw"] {
		full = append(full, row{name: "raw-floor", setup: nothing, argv: []string{self, "child-raw", "127.0.0.1", port}})
	}
	if c.only["mbsync"] {
		if err := ensureMbsync(); err != nil {
			return err
		}
		rc, maildir := filepath.Join(base, "mbsyncrc"), filepath.Join(base, "mbsync")
		if err := writeMbsyncrc(rc, maildir, d.Port()); err != nil {
			return err
		}
		fresh := func() error {
			if err := os.RemoveAll(maildir); err != nil {
				return err
			}
			return os.MkdirAll(maildir, 0o755)
		}
		argv := []string{"mbsync", "-q", "-c", rc, "-a"}
		full = append(full, row{name: "mbsync-full", setup: fresh, argv: argv})
		nochange = append(nochange, row{name: "mbsync-nochange", setup: nothing, argv: argv})
	}
	if c.only["mailsync"] {
		db := filepath.Join(base, "mailsync", "mailsync.db")
		fresh := func() error { return os.RemoveAll(filepath.Dir(db)) }
		argv := []string{self, "child-sync", "sqlite:" + db, "127.0.0.1", port}
		full = append(full, row{name: "mailsync-full", setup: fresh, argv: argv})
		nochange = append(nochange, row{name: "mailsync-nochange", setup: nothing, argv: argv})
	}
	if c.baseline != "" {
		db := filepath.Join(base, "baseline", "mailsync.db")
		fresh := func() error { return os.RemoveAll(filepath.Dir(db)) }
		argv := []string{c.baseline, "child-sync", "sqlite:" + db, "127.0.0.1", port}
		full = append(full, row{name: "baseline-full", setup: fresh, argv: argv})
		nochange = append(nochange, row{name: "baseline-nochange", setup: nothing, argv: argv})
	}
	results := map[string]result{}
	for _, phase := range [][]row{full, nochange} {
		if err := runRounds(c.runs, phase, results); err != nil {
			return err
		}
	}
	for _, r := range append(full, nochange...) {
		res := results[r.name]
		task := ""
		if res.task > 0 {
			task = fmt.Sprintf("   task %.3f s", res.task.Seconds())
		}
		fmt.Printf("%-18s %8.3f s   (runs %s)   CPU %.3f s   peak RSS %4d MiB%s\n", r.name, res.median.Seconds(), res.all,
			res.cpu.Seconds(), res.rss>>20, task)
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
	if c.baseline != "" {
		a, b := results["mailsync-full"], results["baseline-full"]
		fmt.Printf("this build / baseline, first sync: wall %s   task %.3f   CPU %.3f;   no change: wall %s\n",
			ratio("mailsync-full", "baseline-full"), a.task.Seconds()/b.task.Seconds(), a.cpu.Seconds()/b.cpu.Seconds(),
			ratio("mailsync-nochange", "baseline-nochange"))
	}
	return nil
}

// row is one measured command; setup runs before each run of it.
type row struct {
	name  string
	setup func() error
	argv  []string
}

type result struct {
	median time.Duration
	all    string
	cpu    time.Duration // median user+system CPU time of the process
	rss    int64         // bytes, the highest of the measured runs
	task   time.Duration // median of what the process reported as its task's duration, if it did
}

// runRounds runs every row runs+1 times, round-robin, drops each row's first (warm-up) run, and
// records the median wall time, the peak RSS and, for processes that print "task SECONDS", the
// median task time.
func runRounds(runs int, rows []row, results map[string]result) error {
	walls := map[string][]time.Duration{}
	tasks := map[string][]time.Duration{}
	cpus := map[string][]time.Duration{}
	rss := map[string]int64{}
	for i := 0; i <= runs; i++ {
		for _, r := range rows {
			if err := r.setup(); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			cmd := exec.Command(r.argv[0], r.argv[1:]...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			peak := watchPeakRSS(cmd.Process.Pid)
			err := cmd.Wait()
			wall := time.Since(start)
			hwm := peak()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", r.name, err, strings.TrimSpace(stderr.String()))
			}
			if i == 0 {
				continue
			}
			walls[r.name] = append(walls[r.name], wall)
			cpus[r.name] = append(cpus[r.name], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			rss[r.name] = max(rss[r.name], hwm)
			for _, line := range strings.Split(stdout.String(), "\n") {
				if v, ok := strings.CutPrefix(line, "task "); ok {
					if secs, err := strconv.ParseFloat(v, 64); err == nil {
						tasks[r.name] = append(tasks[r.name], time.Duration(secs*float64(time.Second)))
					}
				}
			}
		}
	}
	for _, r := range rows {
		ws := walls[r.name]
		strs := make([]string, len(ws))
		for i, w := range ws {
			strs[i] = fmt.Sprintf("%.3f", w.Seconds())
		}
		results[r.name] = result{median: median(ws), all: strings.Join(strs, " "), cpu: median(cpus[r.name]),
			rss: rss[r.name], task: median(tasks[r.name])}
	}
	return nil
}

// watchPeakRSS samples the process's VmHWM every few milliseconds until the returned function
// is called (after the process has exited), which returns the last sample. The rusage that wait
// returns is no use here: for a child started by os/exec it also counts this process's memory at
// the moment of the fork. A peak reached in the last few milliseconds of a run can be missed.
func watchPeakRSS(pid int) func() int64 {
	status := fmt.Sprintf("/proc/%d/status", pid)
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if hwm := readHWM(status); hwm > 0 {
				peak.Store(max(peak.Load(), hwm))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}

// readHWM reads VmHWM, in bytes, from a /proc/PID/status file; 0 if it cannot.
func readHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

type corpusStats struct {
	messages, folders int
	bytes             int64
}

// corpus gives the benchmark user the generated mailbox, written once and kept between runs
// with its stats in a marker file.
func corpus(d *dovecot.Server, base string, c config) (corpusStats, error) {
	marker := filepath.Join(base, "corpus.txt")
	maildir := d.MaildirPath(login)
	var s corpusStats
	b, err := os.ReadFile(marker)
	if err == nil {
		_, err = fmt.Sscan(string(b), &s.messages, &s.bytes, &s.folders)
	}
	if err == nil {
		_, err = os.Stat(maildir)
	}
	if err != nil {
		if err := os.RemoveAll(maildir); err != nil {
			return s, err
		}
		fmt.Printf("writing %d messages under %s ...\n", c.messages, maildir)
		stats, err := mailgen.WriteMaildir(maildir, mailgen.Options{Seed: c.seed, Messages: c.messages})
		if err != nil {
			return s, err
		}
		s = corpusStats{messages: stats.Messages, bytes: stats.Bytes, folders: len(stats.Folders)}
		if err := os.WriteFile(marker, fmt.Appendf(nil, "%d %d %d\n", s.messages, s.bytes, s.folders), 0o644); err != nil {
			return s, err
		}
	}
	if err := d.AddUser(login, password); err != nil {
		return s, err
	}
	return s, d.Own(maildir)
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
