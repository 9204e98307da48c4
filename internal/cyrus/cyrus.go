// Package cyrus runs a private Cyrus IMAP 3.6 (Debian's cyrus-imapd) on loopback, for the tests:
// Cyrus behaves differently from Dovecot where it matters to a sync (it keeps UIDVALIDITY across
// RENAME, gives folders created in the same second the same UIDVALIDITY, and has OBJECTID).
//
// Debian's cyrus-imapd conflicts with dovecot-imapd as a package, so Cyrus is not installed:
// scripts/cyrus.sh unpacks it into a private root (by default .cache/cyrus/root in the
// repository, or MAILSYNC_CYRUS_ROOT) and installs the libraries it links against. Start never
// provisions anything (scripts/provision.sh does, through scripts/cyrus.sh): it fails with
// ErrNotProvisioned, which tests turn into one skip line.
//
// The server speaks plain IMAP on a free 127.0.0.1 port, allows LOGIN against its own sasldb,
// creates a user's INBOX at first login, and keeps its configuration, databases and spool in one
// directory chosen by the caller. It runs as an unprivileged user: when the caller is root, the
// system user User (created by scripts/provision.sh); otherwise the caller.
package cyrus

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// User is the system user Cyrus runs as when the caller is root.
const User = "mailsync-cyrus"

// servername is the SASL realm of every login (Cyrus defaults it to the host name).
const servername = "mailsync-test"

// startTimeout bounds how long Start waits for the first greeting.
const startTimeout = 10 * time.Second

// ErrNotProvisioned says that the private root lacks Cyrus (or saslpasswd2 is missing).
var ErrNotProvisioned = errors.New("cyrus: not provisioned (run scripts/provision.sh as root, or make test-all)")

// Root returns the private root Cyrus is unpacked into: MAILSYNC_CYRUS_ROOT, else
// .cache/cyrus/root in the module this process runs in (found from the working directory up).
func Root() string {
	if r := os.Getenv("MAILSYNC_CYRUS_ROOT"); r != "" {
		return r
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "cyrus", "root")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Server is a private Cyrus master with its imapd processes. Its methods are safe for concurrent
// use.
type Server struct {
	root     string
	dir      string
	port     int
	uid, gid int // who Cyrus runs as; -1 when it runs as the caller
	runAs    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

func (s *Server) bin(name string) string {
	return filepath.Join(s.root, "usr", "lib", "cyrus", "bin", name)
}
func (s *Server) libs() string           { return filepath.Join(s.root, "usr", "lib", "x86_64-linux-gnu") }
func (s *Server) confPath() string       { return filepath.Join(s.dir, "imapd.conf") }
func (s *Server) masterConfPath() string { return filepath.Join(s.dir, "cyrus.conf") }
func (s *Server) sasldbPath() string     { return filepath.Join(s.dir, "sasldb2") }
func (s *Server) stderrPath() string     { return filepath.Join(s.dir, "master.log") }

// Start starts a server keeping its files in dir, which must exist, and returns once it greets
// IMAP clients, or fails within a few seconds. Close it when done; it also dies with this
// process.
func Start(dir string) (*Server, error) {
	s := &Server{root: Root(), dir: dir, uid: -1, gid: -1}
	if err := s.provisioned(); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		uid, gid, err := lookupUser()
		if err != nil {
			return nil, err
		}
		s.uid, s.gid, s.runAs = uid, gid, User
	} else {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("cyrus: %w", err)
		}
		s.runAs = u.Username
	}
	for _, sub := range []string{"conf/db", "conf/socket", "conf/proc", "conf/lock", "conf/sieve", "conf/log", "spool", "sock"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("cyrus: %w", err)
		}
	}
	if err := os.WriteFile(s.sasldbPath(), nil, 0o640); err != nil {
		return nil, fmt.Errorf("cyrus: %w", err)
	}
	if s.uid >= 0 {
		// Cyrus must be able to walk down to its directory.
		for _, p := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(p, 0o755); err != nil {
				return nil, fmt.Errorf("cyrus: %w", err)
			}
		}
	}
	for attempt := 1; ; attempt++ {
		var err error
		if s.port, err = freePort(); err == nil {
			if err = s.start(); err == nil {
				return s, nil
			}
		}
		if attempt == 3 {
			return nil, fmt.Errorf("cyrus: start: %w", err)
		}
	}
}

func (s *Server) provisioned() error {
	if s.root == "" {
		return ErrNotProvisioned
	}
	for _, p := range []string{s.bin("master"), s.bin("imapd"), s.bin("ctl_cyrusdb")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: %s missing", ErrNotProvisioned, p)
		}
	}
	if _, err := exec.LookPath("saslpasswd2"); err != nil {
		return fmt.Errorf("%w: saslpasswd2 missing (Debian package sasl2-bin)", ErrNotProvisioned)
	}
	return nil
}

// Addr returns host:port of the IMAP listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.port)) }

// Host returns the listener's host, 127.0.0.1.
func (s *Server) Host() string { return "127.0.0.1" }

// Port returns the listener's port.
func (s *Server) Port() int { return s.port }

// AddUser creates a login; its INBOX is created at its first login. Cyrus reads the sasldb at
// every login, so this works while the server runs.
func (s *Server) AddUser(login, password string) error {
	if login == "" || password == "" || strings.ContainsAny(login, "@/. \n") || strings.Contains(password, "\n") {
		return fmt.Errorf("cyrus: add user %q: login must be a plain word and the password one line", login)
	}
	cmd := exec.Command("saslpasswd2", "-f", s.sasldbPath(), "-p", "-c", "-u", servername, login)
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cyrus: add user %q: saslpasswd2: %w: %s", login, err, out)
	}
	return s.own(s.sasldbPath())
}

// own gives path to the user Cyrus runs as.
func (s *Server) own(paths ...string) error {
	if s.uid < 0 {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, s.uid, s.gid); err != nil {
			return fmt.Errorf("cyrus: %w", err)
		}
	}
	return nil
}

func (s *Server) config() string {
	d := s.dir
	return strings.Join([]string{
		"configdirectory: " + filepath.Join(d, "conf"),
		"partition-default: " + filepath.Join(d, "spool"),
		"defaultpartition: default",
		"servername: " + servername,
		"cyrus_user: " + s.runAs,
		"admins: cyrus-admin",
		"sasl_pwcheck_method: auxprop",
		"sasl_auxprop_plugin: sasldb",
		"sasl_sasldb_path: " + s.sasldbPath(),
		"sasl_mech_list: PLAIN LOGIN",
		"allowplaintext: yes",
		"autocreate_quota: 0", // create a user's INBOX at first login
		"unixhierarchysep: yes",
		"proc_path: " + filepath.Join(d, "conf", "proc"),
		"mboxname_lockpath: " + filepath.Join(d, "conf", "lock"),
		"lmtpsocket: " + filepath.Join(d, "sock", "lmtp"),
		"idlesocket: " + filepath.Join(d, "sock", "idle"),
		"notifysocket: " + filepath.Join(d, "sock", "notify"),
		"syslog_prefix: mailsync-cyrus-" + strconv.Itoa(s.port),
		"",
	}, "\n")
}

func (s *Server) masterConfig() string {
	return fmt.Sprintf(`START {
  recover cmd="%s -C %s -r"
}
SERVICES {
  imap cmd="%s -C %s" listen="127.0.0.1:%d" prefork=0
}
EVENTS {
}
DAEMON {
}
`, s.bin("ctl_cyrusdb"), s.confPath(), s.bin("imapd"), s.confPath(), s.port)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	if err := os.WriteFile(s.confPath(), []byte(s.config()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(s.masterConfPath(), []byte(s.masterConfig()), 0o644); err != nil {
		return err
	}
	if s.uid >= 0 {
		if err := chownTree(s.dir, s.uid, s.gid); err != nil {
			return err
		}
	}
	// -D keeps the master in the foreground as our child; its own process group lets Stop kill
	// the imapd processes with it, and Pdeathsig ends it if this process dies.
	cmd := exec.Command(s.bin("master"), "-C", s.confPath(), "-M", s.masterConfPath(),
		"-p", filepath.Join(s.dir, "master.pid"), "-D")
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+s.libs())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}
	}
	out, err := os.OpenFile(s.stderrPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if greets(s.Addr()) {
			s.cmd, s.exit = cmd, exit
			return nil
		}
		select {
		case <-exit:
			// Cyrus logs to syslog: what it says there is not ours to read.
			return fmt.Errorf("cyrus master exited (%s); its messages go to syslog: %s", cmd.ProcessState, tail(s.stderrPath()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exit
			return fmt.Errorf("no IMAP greeting on %s within %s", s.Addr(), startTimeout)
		}
	}
}

// Close kills the master and its imapd processes. The directory given to Start stays for the
// caller. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exit
	s.cmd, s.exit = nil, nil
	return nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// lookupUser returns User's uid and gid; a missing user is ErrNotProvisioned.
func lookupUser() (uid, gid int, err error) {
	u, err := user.Lookup(User)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: system user %s missing", ErrNotProvisioned, User)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// greets reports whether an IMAP server answers with a greeting on addr.
func greets(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "* OK")
}

// tail returns the end of a file, capped for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
