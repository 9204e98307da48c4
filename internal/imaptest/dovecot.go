// Package imaptest runs real IMAP servers for tests and for the demo mode: a private Dovecot
// process (Debian's dovecot-imapd) and go-imap's in-memory server.
//
// It imports go-imap, as test and demo support: production code talks IMAP only through
// internal/imapconn. Every server listens on a free loopback port and keeps its state in its own
// directory, so several test binaries can run servers at the same time.
package imaptest

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// DovecotBinary is where Debian's dovecot-core installs the server.
	DovecotBinary = "/usr/sbin/dovecot"
	// MailUser is the unprivileged system user Dovecot's mail processes run as.
	MailUser = "mailsync-vmail"
)

// User is a mailbox account on a test server.
type User struct {
	Login, Password string
}

// Dovecot is a private Dovecot instance on 127.0.0.1: plain IMAP (no TLS), LOGIN allowed,
// Maildir++ storage, every file under the test's temporary directory.
type Dovecot struct {
	dir    string // config, state, log, passwd-file and the users' homes
	runDir string // base_dir: sockets; kept short because unix socket paths are limited to 108 bytes
	port   int
	uid    int
	gid    int
	conns  int

	seq atomic.Uint64 // makes Maildir file names unique

	mu    sync.Mutex
	cmd   *exec.Cmd
	exit  chan struct{} // closed when cmd has exited
	users map[string]User
}

// DovecotOption adjusts a Dovecot before it starts.
type DovecotOption func(*Dovecot)

// WithMaxUserConnections sets mail_max_userip_connections (default 100), to test how clients
// cope with a server that turns connections away.
func WithMaxUserConnections(n int) DovecotOption {
	return func(d *Dovecot) { d.conns = n }
}

// StartDovecot starts a private Dovecot and stops it when the test ends. It fails the test when
// Dovecot is not installed: the project's test script installs it (Debian package
// dovecot-imapd).
func StartDovecot(tb testing.TB, opts ...DovecotOption) *Dovecot {
	tb.Helper()
	if _, err := os.Stat(DovecotBinary); err != nil {
		tb.Fatalf("imaptest: Dovecot is not installed (%v): run the project's test script, which installs the Debian package dovecot-imapd", err)
	}
	uid, gid, err := ensureMailUser()
	if err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	d := &Dovecot{dir: tb.TempDir(), uid: uid, gid: gid, conns: 100, users: map[string]User{}}
	for _, opt := range opts {
		opt(d)
	}
	// The mail processes run as MailUser: they must be able to walk down to the homes.
	for _, p := range []string{filepath.Dir(d.dir), d.dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			tb.Fatalf("imaptest: %v", err)
		}
	}
	runDir, err := os.MkdirTemp("", "dovecot-")
	if err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	d.runDir = runDir
	if err := os.Chmod(runDir, 0o755); err != nil { // Dovecot wants its base_dir world-readable
		tb.Fatalf("imaptest: %v", err)
	}
	tb.Cleanup(func() {
		d.Stop()
		os.RemoveAll(runDir)
	})
	if err := os.WriteFile(d.passwdPath(), nil, 0o644); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}

	// Another process may take the free port between our probe and Dovecot's bind: try again on
	// a new one.
	for attempt := 1; ; attempt++ {
		if d.port, err = freePort(); err != nil {
			tb.Fatalf("imaptest: %v", err)
		}
		if err = d.start(); err == nil {
			return d
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			tb.Fatalf("imaptest: start dovecot: %v", err)
		}
	}
}

// Addr returns host:port of the IMAP listener.
func (d *Dovecot) Addr() string { return net.JoinHostPort(d.Host(), strconv.Itoa(d.port)) }

// Host returns the listener's host, 127.0.0.1.
func (d *Dovecot) Host() string { return "127.0.0.1" }

// Port returns the listener's port.
func (d *Dovecot) Port() int { return d.port }

// LogPath returns Dovecot's log file, worth printing when a test fails.
func (d *Dovecot) LogPath() string { return filepath.Join(d.dir, "dovecot.log") }

func (d *Dovecot) passwdPath() string { return filepath.Join(d.dir, "passwd") }
func (d *Dovecot) confPath() string   { return filepath.Join(d.dir, "dovecot.conf") }
func (d *Dovecot) home(login string) string {
	return filepath.Join(d.dir, "home", login)
}

// MaildirPath returns the root of u's Maildir++ (the INBOX; other folders are ".Name"
// subdirectories).
func (d *Dovecot) MaildirPath(u User) string { return filepath.Join(d.home(u.Login), "Maildir") }

// AddUser creates an account with an empty INBOX. Dovecot re-reads its passwd-file on change, so
// this works while the server runs.
func (d *Dovecot) AddUser(tb testing.TB, login, password string) User {
	tb.Helper()
	if strings.ContainsAny(login+password, ":\n") || login == "" {
		tb.Fatalf("imaptest: login and password must be non-empty and free of ':' and newlines")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[login]; ok {
		tb.Fatalf("imaptest: user %q exists already", login)
	}
	u := User{Login: login, Password: password}
	if err := d.makeMaildirFolder(d.MaildirPath(u)); err != nil {
		tb.Fatalf("imaptest: add user %s: %v", login, err)
	}
	f, err := os.OpenFile(d.passwdPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatalf("imaptest: add user %s: %v", login, err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s:{PLAIN}%s::::%s::\n", login, password, d.home(login)); err != nil {
		tb.Fatalf("imaptest: add user %s: %v", login, err)
	}
	d.users[login] = u
	return u
}

// makeMaildirFolder creates a Maildir folder (cur, new, tmp) owned by MailUser, parents included.
func (d *Dovecot) makeMaildirFolder(path string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o755); err != nil {
			return err
		}
	}
	// Chown from the home down: Dovecot writes index files and new folders in all of them.
	home := d.dir + string(filepath.Separator) + "home"
	for p := filepath.Join(path, "tmp"); strings.HasPrefix(p, home+string(filepath.Separator)); p = filepath.Dir(p) {
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return err
		}
	}
	for _, sub := range []string{"cur", "new"} {
		if err := os.Chown(filepath.Join(path, sub), d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

var errAddrInUse = errors.New("address already in use")

// Start starts a stopped Dovecot again, on the same port with the same data: for tests where the
// server dies in the middle of something.
func (d *Dovecot) Start(tb testing.TB) {
	tb.Helper()
	if err := d.start(); err != nil {
		tb.Fatalf("imaptest: restart dovecot: %v", err)
	}
}

func (d *Dovecot) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return errors.New("already running")
	}
	if err := os.WriteFile(d.confPath(), []byte(d.config()), 0o644); err != nil {
		return err
	}
	logStart := fileSize(d.LogPath())
	// -F keeps the master in the foreground as our child, so we own its lifetime. Its own
	// process group lets Stop kill the workers with it; Pdeathsig ends it if the test binary dies.
	cmd := exec.Command(DovecotBinary, "-F", "-c", d.confPath())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.OpenFile(filepath.Join(d.dir, "dovecot.stderr"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
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
		cmd.Wait()
		close(exit)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if greets(d.Addr()) {
			d.cmd, d.exit = cmd, exit
			return nil
		}
		select {
		case <-exit:
			msg := tail(d.LogPath(), logStart) + tail(filepath.Join(d.dir, "dovecot.stderr"), 0)
			if strings.Contains(msg, "in use") {
				return fmt.Errorf("%w: port %d: %s", errAddrInUse, d.port, msg)
			}
			return fmt.Errorf("dovecot exited: %s", msg)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exit
			return fmt.Errorf("no IMAP greeting on %s within 10s; log: %s", d.Addr(), tail(d.LogPath(), logStart))
		}
	}
}

// Stop kills Dovecot and all its processes at once, like a crash: open connections drop
// mid-command. It is safe to call on a stopped server.
func (d *Dovecot) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exit
	// Workers that escaped the group (none expected) notice the master's death by themselves.
	d.cmd, d.exit = nil, nil
}

// Pause freezes every Dovecot process (SIGSTOP): connections stay open but nothing answers, as
// with a hung server or a dead network path.
func (d *Dovecot) Pause(tb testing.TB) {
	tb.Helper()
	d.signal(tb, syscall.SIGSTOP)
}

// Resume undoes Pause.
func (d *Dovecot) Resume(tb testing.TB) {
	tb.Helper()
	d.signal(tb, syscall.SIGCONT)
}

func (d *Dovecot) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		tb.Fatalf("imaptest: dovecot is not running")
	}
	if err := syscall.Kill(-d.cmd.Process.Pid, sig); err != nil {
		tb.Fatalf("imaptest: signal dovecot: %v", err)
	}
}

func (d *Dovecot) config() string {
	return fmt.Sprintf(`# Written by mailsync's imaptest: a private, plain-text, loopback-only IMAP server.
protocols = imap
listen = 127.0.0.1
base_dir = %[1]s
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_uid = %[3]d
mail_gid = %[4]d
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:~/Maildir
mail_fsync = never
protocol imap {
  mail_max_userip_connections = %[6]d
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]d
  }
  inet_listener imaps {
    port = 0
  }
}
# No growing delay after failed logins (auth penalty): tests fail logins on purpose.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
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
  args = scheme=PLAIN username_format=%%u %[2]s/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[2]s/passwd
}
`, d.runDir, d.dir, d.uid, d.gid, d.port, d.conns)
}

// ensureMailUser returns MailUser's uid and gid, creating the system user when missing (the
// tests run as root).
func ensureMailUser() (uid, gid int, err error) {
	lookup := func() (int, int, error) {
		u, err := user.Lookup(MailUser)
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
	out, addErr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--shell", "/usr/sbin/nologin", MailUser).CombinedOutput()
	// Another test binary may have created it meanwhile: look again before giving up.
	if uid, gid, err := lookup(); err == nil {
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("create system user %s (are we root?): %v: %s", MailUser, addErr, out)
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
	conn.SetDeadline(time.Now().Add(2 * time.Second))
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
