package memimap

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := New()
	if err := s.ListenTLS("127.0.0.1:0"); err == nil {
		t.Fatal("ListenTLS without WithTLS was accepted")
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Listen("127.0.0.1:0"); err == nil {
		t.Fatal("a second Listen was accepted")
	}
	if s.Host() != "127.0.0.1" || s.Port() == 0 {
		t.Fatalf("listening on %q", s.Addr())
	}

	if _, err := s.AddUser("ann", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser("ann", "pw"); err == nil {
		t.Fatal("a duplicate user was accepted")
	}
	if err := s.CreateFolder("ann", "Archive/2024"); err != nil {
		t.Fatal(err)
	}
	first, err := s.Append("ann", "Archive/2024", []byte("Subject: a\r\n\r\nx\r\n"), time.Time{}, `\Seen`)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Append("ann", "Archive/2024", []byte("Subject: b\r\n\r\ny\r\n"), time.Now())
	if err != nil || second <= first {
		t.Fatalf("UIDs %d then %d (%v): want them to grow", first, second, err)
	}
	if _, err := s.Append("nobody", "INBOX", []byte("x"), time.Time{}); err == nil {
		t.Fatal("append for an unknown user was accepted")
	}
	if _, err := s.Append("ann", "Missing", []byte("x"), time.Time{}); err == nil {
		t.Fatal("append to a missing folder was accepted")
	}

	// It speaks IMAP: the greeting arrives.
	conn, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "* OK") {
		t.Fatalf("greeting %q", buf[:n])
	}
}
