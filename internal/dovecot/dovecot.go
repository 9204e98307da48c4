// Package dovecot runs a private Dovecot (Debian's dovecot-imapd) on loopback, for the tests and
// for the benchmark: both need a real IMAP server whose every file they own, that several
// programs can run side by side and that dies with the program that started it.
//
// The server speaks plain IMAP (no TLS) on a free 127.0.0.1 port, allows LOGIN, stores mail as
// Maildir++ and keeps its configuration, state, log, passwd-file and the users' homes in one
// directory chosen by the caller. Its mail processes run as an unprivileged system user
// (MailUser): the caller must be root, and the user must exist. Start never installs or creates
// anything: scripts/provision.sh does, and Start fails with an *UnavailableError (which tests
// turn into one skip line) when Dovecot, the user or root is missing.
package dovecot

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
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

const (
	// Binary is where Debian's dovecot-core installs the server; Path looks for it on PATH
	// (root's PATH has /usr/sbin), not here, so that a PATH without it means no Dovecot.
	Binary = "/usr/sbin/dovecot"
	// BinaryEnv names the variable that points at another dovecot binary than the one on PATH.
	BinaryEnv = "MAILSYNC_DOVECOT"
	// MailUser is the system user Dovecot's mail processes run as: Dovecot refuses to run them
	// as root.
	MailUser = "mailsync-vmail"
)

// Options adjust a server before it starts. The zero value suits most uses.
type Options struct {
	// MaxUserConnections is mail_max_userip_connections; 0 means 100, more than any client of
	// ours opens, so that only a test that sets it low sees connections turned away.
	MaxUserConnections int
	// OAuth2IntrospectionURL, when set, adds XOAUTH2 and OAUTHBEARER logins validated by an
	// oauth2 passdb that POSTs every token to this RFC 7662 introspection endpoint (the answer's
	// "username" must be the login, "active" "true"). Users still come from AddUser: their
	// password-file entry gives the home, and LOGIN keeps working.
	OAuth2IntrospectionURL string
}

// Server is a private Dovecot process. Its methods are safe for concurrent use.
type Server struct {
	bin    string // the dovecot binary
	dir    string // config, state, log, passwd-file and the users' homes
	runDir string // base_dir: sockets; kept short because unix socket paths are limited to 108 bytes
	port   int
	uid    int
	gid    int
	conns  int
	oauth  string // the introspection URL, or ""

	mu    sync.Mutex
	cmd   *exec.Cmd
	exit  chan struct{} // closed when cmd has exited
	users map[string]bool
}

// UnavailableError says why Dovecot cannot run on this machine as it is (not installed, MailUser
// missing, not root) and what to do about it, in one line.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return "dovecot: " + e.Reason }

// errAddrInUse marks a start that lost its free port to another process.
var errAddrInUse = errors.New("address already in use")

// Start starts a server keeping its files in dir, which must exist, and returns once it greets
// IMAP clients. The server has no users until AddUser. Close it when done; it also dies with
// this process.
func Start(dir string, opts Options) (*Server, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	uid, gid, err := Available()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, uid: uid, gid: gid, conns: opts.MaxUserConnections, users: map[string]bool{}, oauth: opts.OAuth2IntrospectionURL}
	if s.conns == 0 {
		s.conns = 100
	}
	// The mail processes run as MailUser: they must be able to walk down to the homes.
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
	}
	if err := os.WriteFile(s.passwdPath(), nil, 0o644); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if s.runDir, err = os.MkdirTemp("", "dovecot-"); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := os.Chmod(s.runDir, 0o755); err != nil { // Dovecot wants its base_dir world-readable
		os.RemoveAll(s.runDir)
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	// Another process may take the free port between our probe and Dovecot's bind: try again on
	// a new one.
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			if err = s.start(); err == nil {
				return s, nil
			}
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			os.RemoveAll(s.runDir)
			return nil, fmt.Errorf("dovecot: start: %w", err)
		}
	}
}

// Addr returns host:port of the IMAP listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.port)) }

// Host returns the listener's host, 127.0.0.1.
func (s *Server) Host() string { return "127.0.0.1" }

// Port returns the listener's port; it stays the same across Stop and Restart.
func (s *Server) Port() int { return s.port }

// LogPath returns Dovecot's log file, worth showing when something fails.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "dovecot.log") }

func (s *Server) passwdPath() string { return filepath.Join(s.dir, "passwd") }
func (s *Server) confPath() string   { return filepath.Join(s.dir, "dovecot.conf") }
func (s *Server) stderrPath() string { return filepath.Join(s.dir, "dovecot.stderr") }
func (s *Server) homes() string      { return filepath.Join(s.dir, "home") }
func (s *Server) oauthConfPath() string {
	return filepath.Join(s.dir, "oauth2.conf.ext")
}

// MaildirPath returns the root of login's Maildir++: the INBOX, with every other folder in a
// ".Name" subdirectory. Files written there directly must be handed over with Own.
func (s *Server) MaildirPath(login string) string {
	return filepath.Join(s.homes(), login, "Maildir")
}

// AddUser creates an account, keeping whatever its Maildir already holds (an empty INBOX when
// nothing). Dovecot re-reads its passwd-file on change, so this works while the server runs.
func (s *Server) AddUser(login, password string) error {
	if login == "" || strings.ContainsAny(login+password, ":\n/") {
		return fmt.Errorf("dovecot: add user %q: login and password must be non-empty and free of ':', '/' and newlines", login)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[login] {
		return fmt.Errorf("dovecot: add user %q: exists already", login)
	}
	if err := s.MakeMaildir(s.MaildirPath(login)); err != nil {
		return fmt.Errorf("dovecot: add user %q: %w", login, err)
	}
	f, err := os.OpenFile(s.passwdPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("dovecot: add user %q: %w", login, err)
	}
	defer f.Close()
	home := filepath.Join(s.homes(), login)
	if _, err := fmt.Fprintf(f, "%s:{PLAIN}%s::::%s::\n", login, password, home); err != nil {
		return fmt.Errorf("dovecot: add user %q: %w", login, err)
	}
	s.users[login] = true
	return nil
}

// MakeMaildir creates a Maildir folder (cur, new, tmp) at path, which must lie under a user's
// Maildir, and gives it and its parents up to the home to MailUser: Dovecot writes index files
// and new folders in all of them.
func (s *Server) MakeMaildir(path string) error {
	homes := s.homes() + string(filepath.Separator)
	if !strings.HasPrefix(path, homes) {
		return fmt.Errorf("dovecot: make maildir %s: not under %s", path, homes)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o755); err != nil {
			return fmt.Errorf("dovecot: make maildir: %w", err)
		}
	}
	for p := filepath.Join(path, "tmp"); strings.HasPrefix(p, homes); p = filepath.Dir(p) {
		if err := os.Chown(p, s.uid, s.gid); err != nil {
			return fmt.Errorf("dovecot: make maildir: %w", err)
		}
	}
	for _, sub := range []string{"cur", "new"} {
		if err := os.Chown(filepath.Join(path, sub), s.uid, s.gid); err != nil {
			return fmt.Errorf("dovecot: make maildir: %w", err)
		}
	}
	return nil
}

// Own gives path, and everything under it when it is a directory, to MailUser: mail written
// straight into a Maildir is otherwise root's, and Dovecot could neither flag nor expunge it.
func (s *Server) Own(path string) error {
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, s.uid, s.gid)
	})
	if err != nil {
		return fmt.Errorf("dovecot: own %s: %w", path, err)
	}
	return nil
}

// Restart starts a stopped server again, on the same port with the same data: for tests where
// the server dies in the middle of something.
func (s *Server) Restart() error {
	if err := s.start(); err != nil {
		return fmt.Errorf("dovecot: restart: %w", err)
	}
	return nil
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
	if s.oauth != "" {
		if err := os.WriteFile(s.oauthConfPath(), []byte(s.oauthConfig()), 0o644); err != nil {
			return err
		}
	}
	logStart := fileSize(s.LogPath())
	// -F keeps the master in the foreground as our child, so we own its lifetime. Its own
	// process group lets Stop kill the workers with it; Pdeathsig ends it if our process dies.
	cmd := exec.Command(s.bin, "-F", "-c", s.confPath())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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

	deadline := time.Now().Add(10 * time.Second)
	for {
		if greets(s.Addr()) {
			s.cmd, s.exit = cmd, exit
			return nil
		}
		select {
		case <-exit:
			msg := tail(s.LogPath(), logStart) + tail(s.stderrPath(), 0)
			if strings.Contains(msg, "in use") {
				return fmt.Errorf("%w: port %d: %s", errAddrInUse, s.port, msg)
			}
			return fmt.Errorf("dovecot exited: %s", msg)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exit
			return fmt.Errorf("no IMAP greeting on %s within 10s; log: %s", s.Addr(), tail(s.LogPath(), logStart))
		}
	}
}

// Stop kills Dovecot and all its processes at once, like a crash: open connections drop
// mid-command. It is safe to call on a stopped server; Restart starts it again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exit
	// Workers that escaped the group (none expected) notice the master's death by themselves.
	s.cmd, s.exit = nil, nil
}

// Close stops the server for good and removes its sockets. The directory given to Start, with
// the mail, stays for the caller.
func (s *Server) Close() error {
	s.Stop()
	if err := os.RemoveAll(s.runDir); err != nil {
		return fmt.Errorf("dovecot: close: %w", err)
	}
	return nil
}

// Pause freezes every Dovecot process (SIGSTOP): connections stay open but nothing answers, as
// with a hung server or a dead network path.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("dovecot: not running")
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("dovecot: signal %v: %w", sig, err)
	}
	return nil
}

// Path returns the dovecot binary: MAILSYNC_DOVECOT when set, else dovecot on PATH. Its error is
// an *UnavailableError.
func Path() (string, error) {
	name, where := "dovecot", "on PATH"
	if v := os.Getenv(BinaryEnv); v != "" {
		name, where = v, "at "+BinaryEnv+"="+v
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", &UnavailableError{Reason: fmt.Sprintf("not installed (no dovecot %s; Debian's dovecot-imapd puts it at %s); run scripts/provision.sh or make test-all", where, Binary)}
	}
	return p, nil
}

// Available reports whether Start can run here, and MailUser's uid and gid when it can. Its
// error is an *UnavailableError.
func Available() (uid, gid int, err error) {
	unavailable := func(format string, args ...any) (int, int, error) {
		return 0, 0, &UnavailableError{Reason: fmt.Sprintf(format, args...) + "; run scripts/provision.sh or make test-all"}
	}
	if _, err := Path(); err != nil {
		return 0, 0, err
	}
	if os.Geteuid() != 0 {
		return unavailable("needs root (its mail processes run as the system user %s)", MailUser)
	}
	u, err := user.Lookup(MailUser)
	if err != nil {
		return unavailable("system user %s missing", MailUser)
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

// greets reports whether an IMAP server answers with a greeting on addr: a listening socket
// alone is not enough, the login process must be up.
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

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tail returns the end of a log file from offset on, capped for error messages.
func tail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
