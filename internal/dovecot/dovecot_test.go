package dovecot

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailsync/internal/testenv"
)

// start runs a server for the test and closes it at the end.
func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(t.TempDir(), opts)
	if u := (*UnavailableError)(nil); errors.As(err, &u) {
		testenv.Skip(t, "dovecot", u.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// login sends LOGIN on a fresh connection and returns the tagged response line.
func login(t *testing.T, addr, user, password string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if greeting, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	fmt.Fprintf(conn, "a LOGIN %q %q\r\n", user, password)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("LOGIN: %v", err)
		}
		if strings.HasPrefix(line, "a ") {
			return strings.TrimSpace(line)
		}
	}
}

func owner(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestLoginStopRestartClose(t *testing.T) {
	s, err := Start(t.TempDir(), Options{})
	if u := (*UnavailableError)(nil); errors.As(err, &u) {
		testenv.Skip(t, "dovecot", u.Reason)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if got := login(t, s.Addr(), "alice", "secret"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("LOGIN alice = %q, want OK", got)
	}
	if got := login(t, s.Addr(), "alice", "wrong"); !strings.HasPrefix(got, "a NO") {
		t.Fatalf("LOGIN with a wrong password = %q, want NO", got)
	}

	port := s.Port()
	s.Stop()
	s.Stop() // a second Stop is harmless
	if greets(s.Addr()) {
		t.Fatal("server still greets after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Port() != port {
		t.Fatalf("port %d after restart, want %d", s.Port(), port)
	}
	if got := login(t, s.Addr(), "alice", "secret"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("LOGIN alice after restart = %q, want OK", got)
	}
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if greets(s.Addr()) {
		t.Fatal("server still greets after Close")
	}
	if _, err := os.Stat(s.runDir); !os.IsNotExist(err) {
		t.Fatalf("base_dir %s left behind: %v", s.runDir, err)
	}
	if err := s.Pause(); err == nil {
		t.Fatal("Pause of a closed server succeeded")
	}
}

func TestPauseResume(t *testing.T) {
	s := start(t, Options{})
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err) // the kernel still accepts: only the processes are frozen
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Fatalf("paused server sent %d bytes", n)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if !greets(s.Addr()) {
		t.Fatal("no greeting after Resume")
	}
}

func TestAddUserRejects(t *testing.T) {
	s := start(t, Options{})
	if err := s.AddUser("bob", "pw"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, login, password string }{
		{"empty login", "", "pw"},
		{"colon in login", "a:b", "pw"},
		{"colon in password", "carol", "p:w"},
		{"newline", "dave", "p\nw"},
		{"slash", "../x", "pw"},
		{"duplicate", "bob", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AddUser(tc.login, tc.password); err == nil {
				t.Fatalf("AddUser(%q, %q) succeeded", tc.login, tc.password)
			}
		})
	}
	passwd, err := os.ReadFile(s.passwdPath())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(passwd), "\n"); n != 1 {
		t.Fatalf("passwd-file has %d lines, want 1:\n%s", n, passwd)
	}
}

func TestMaildirOwnership(t *testing.T) {
	s := start(t, Options{})
	if err := s.AddUser("erin", "pw"); err != nil {
		t.Fatal(err)
	}
	root := s.MaildirPath("erin")
	for _, p := range []string{filepath.Dir(root), root, filepath.Join(root, "cur"), filepath.Join(root, "new"), filepath.Join(root, "tmp")} {
		if got := owner(t, p); got != s.uid {
			t.Errorf("%s is owned by %d, want the mail user %d", p, got, s.uid)
		}
	}

	folder := filepath.Join(root, ".Archive.2024")
	if err := s.MakeMaildir(folder); err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(folder, "cur", "1.M1P1.test:2,S")
	if err := os.WriteFile(msg, []byte("Subject: x\r\n\r\nx\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Own(folder); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{folder, filepath.Join(folder, "tmp"), msg} {
		if got := owner(t, p); got != s.uid {
			t.Errorf("%s is owned by %d, want the mail user %d", p, got, s.uid)
		}
	}

	if err := s.MakeMaildir(filepath.Join(t.TempDir(), "elsewhere")); err == nil {
		t.Error("MakeMaildir outside the homes succeeded")
	}
	if err := s.Own(filepath.Join(root, "missing")); err == nil {
		t.Error("Own of a missing path succeeded")
	}
}

func TestConfigConnectionLimit(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "mail_max_userip_connections = 100\n"},
		{Options{MaxUserConnections: 2}, "mail_max_userip_connections = 2\n"},
	} {
		s := start(t, tc.opts)
		conf, err := os.ReadFile(s.confPath())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(conf), tc.want) {
			t.Errorf("Options %+v: dovecot.conf lacks %q:\n%s", tc.opts, tc.want, conf)
		}
	}
}
