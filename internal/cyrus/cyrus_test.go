package cyrus_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mailsync/internal/cyrus"
	"mailsync/internal/testenv"
)

// TestStartLoginObjectID starts a private Cyrus, logs in over plain IMAP and checks the
// capabilities the syncer relies on: OBJECTID, CONDSTORE, LIST-STATUS.
func TestStartLoginObjectID(t *testing.T) {
	srv, err := cyrus.Start(t.TempDir())
	if errors.Is(err, cyrus.ErrNotProvisioned) {
		testenv.Skip(t, "cyrus", strings.TrimPrefix(err.Error(), "cyrus: "))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.AddUser("alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	answer := func(tag, cmd string) string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		var all strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v (so far %q)", cmd, err, all.String())
			}
			all.WriteString(line)
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("%s: %s", cmd, all.String())
				}
				return all.String()
			}
		}
	}
	login := answer("a", "LOGIN alice pw-alice")
	for _, c := range []string{"OBJECTID", "CONDSTORE", "LIST-STATUS"} {
		if !strings.Contains(login, " "+c+" ") {
			t.Errorf("capability %s not advertised: %s", c, login)
		}
	}
	if sel := answer("b", "EXAMINE INBOX"); !strings.Contains(sel, "[MAILBOXID (") {
		t.Errorf("EXAMINE INBOX without MAILBOXID: %s", sel)
	}
}

// TestWrongPasswordRefused checks that the sasldb is what decides.
func TestWrongPasswordRefused(t *testing.T) {
	srv, err := cyrus.Start(t.TempDir())
	if errors.Is(err, cyrus.ErrNotProvisioned) {
		testenv.Skip(t, "cyrus", strings.TrimPrefix(err.Error(), "cyrus: "))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.AddUser("bob", "right"); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	_, _ = r.ReadString('\n')
	fmt.Fprintf(conn, "a LOGIN bob wrong\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a ") {
			if !strings.HasPrefix(line, "a NO") {
				t.Errorf("wrong password: %q, want NO", line)
			}
			return
		}
	}
}
