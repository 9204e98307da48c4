// Package hostile is a small scripted IMAP server for tests: by default an honest, minimal
// IMAP4rev1 server over a fixed mailbox, whose answers a test can replace command by command to
// play a server that lies, floods or never ends. It speaks just enough IMAP for mailsync's client
// (LOGIN, LIST, STATUS, EXAMINE/SELECT, UID FETCH, UID SEARCH ALL, NOOP, LOGOUT) and trusts its
// client: it is test code, on loopback only.
package hostile

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Message is one message of a folder. Its bytes are Raw, or when Raw is nil, Size bytes made by
// Generate (so a test can serve a 200 MB message without holding it).
type Message struct {
	UID   uint32
	Flags []string
	Raw   []byte
	Size  int64
	// Announce, when not zero, is the literal size announced for the body instead of its real
	// size: the server then streams filler until the client hangs up, and RFC822.SIZE says Size.
	Announce int64
}

// Len is the size of the message's bytes.
func (m Message) Len() int64 {
	if m.Raw != nil {
		return int64(len(m.Raw))
	}
	return m.Size
}

// WriteTo writes the message's bytes.
func (m Message) WriteTo(w io.Writer) (int64, error) {
	if m.Raw != nil {
		n, err := w.Write(m.Raw)
		return int64(n), err
	}
	return Generate(w, m.UID, m.Size)
}

// Sum is the SHA-256 of the message's bytes.
func (m Message) Sum() [32]byte {
	h := sha256.New()
	_, _ = m.WriteTo(h)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Generate writes a valid message of exactly size bytes (at least a header's worth): a header
// naming uid, then lines of text.
func Generate(w io.Writer, uid uint32, size int64) (int64, error) {
	header := fmt.Sprintf("From: big@example.test\r\nSubject: generated message %d\r\nMessage-ID: <gen-%d@example.test>\r\n\r\n", uid, uid)
	line := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2) + "\r\n")
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int64
	write := func(b []byte) error {
		if left := size - n; int64(len(b)) > left {
			b = b[:left]
		}
		k, err := bw.Write(b)
		n += int64(k)
		return err
	}
	if err := write([]byte(header)); err != nil {
		return n, err
	}
	for n < size {
		if err := write(line); err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// Folder is one mailbox. Name is spelled as on the wire, so it may be invalid modified UTF-7.
type Folder struct {
	Name        string
	UIDValidity uint32
	Messages    []Message
}

// Handler answers one command in place of the server's own code: it writes untagged data with
// s.Printf or s.W and returns the tagged status text ("OK done", "NO nope"), or "" to hang up.
type Handler func(s *Session, args string) string

// Server is a hostile IMAP server on a loopback port.
type Server struct {
	Login, Password string

	ln       net.Listener
	mu       sync.Mutex
	folders  []Folder
	handlers map[string]Handler
	wg       sync.WaitGroup
	conns    map[net.Conn]bool

	// Logins counts successful logins: a client that redials shows here.
	Logins atomic.Int64
}

// Start serves folders on a free loopback port until the test ends.
func Start(t testing.TB, folders ...Folder) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Login: "bob", Password: "pw", ln: ln, folders: folders, handlers: map[string]Handler{},
		conns: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	t.Cleanup(s.Close)
	return s
}

// Host and Port are where the server listens.
func (s *Server) Host() string { return "127.0.0.1" }
func (s *Server) Port() int    { return s.ln.Addr().(*net.TCPAddr).Port }

// Handle replaces the server's answer to a command (upper case: "LIST", "STATUS", "EXAMINE",
// "UID FETCH", "UID SEARCH").
func (s *Server) Handle(command string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[command] = h
}

// Close stops the server and hangs up on every client.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			sess := &Session{srv: s, r: bufio.NewReader(c), W: bufio.NewWriterSize(c, 64<<10)}
			sess.serve()
		})
	}
}

// Session is one client connection.
type Session struct {
	srv      *Server
	r        *bufio.Reader
	W        *bufio.Writer // raw access, for writing what Printf cannot (endless literals)
	selected *Folder
}

// Printf writes to the client (add the CRLF yourself) and reports whether the client is still
// there.
func (s *Session) Printf(format string, args ...any) bool {
	_, err := fmt.Fprintf(s.W, format, args...)
	return err == nil
}

// Flush sends what was written and reports whether the client is still there.
func (s *Session) Flush() bool { return s.W.Flush() == nil }

// Endless writes b again and again until the client hangs up, pausing every between writes.
func (s *Session) Endless(b []byte, every time.Duration) {
	for {
		if _, err := s.W.Write(b); err != nil {
			return
		}
		if every > 0 {
			if s.W.Flush() != nil {
				return
			}
			time.Sleep(every)
		}
	}
}

// Folders returns the mailbox.
func (s *Session) Folders() []Folder {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	return s.srv.folders
}

func (s *Session) serve() {
	s.Printf("* OK hostile IMAP ready\r\n")
	s.Flush()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		name, args, _ := strings.Cut(rest, " ")
		name = strings.ToUpper(name)
		if name == "UID" {
			sub, more, _ := strings.Cut(args, " ")
			name, args = "UID "+strings.ToUpper(sub), more
		}
		s.srv.mu.Lock()
		h := s.srv.handlers[name]
		s.srv.mu.Unlock()
		if h == nil {
			h = builtin[name]
		}
		if h == nil {
			h = func(*Session, string) string { return "BAD unknown command" }
		}
		status := h(s, args)
		if status == "" {
			s.Flush()
			return
		}
		if !s.Printf("%s %s\r\n", tag, status) || !s.Flush() || name == "LOGOUT" {
			return
		}
	}
}

var builtin map[string]Handler

func init() {
	builtin = map[string]Handler{
		"CAPABILITY": func(s *Session, _ string) string {
			s.Printf("* CAPABILITY IMAP4rev1\r\n")
			return "OK"
		},
		"NOOP":   func(*Session, string) string { return "OK" },
		"LOGOUT": func(s *Session, _ string) string { s.Printf("* BYE\r\n"); return "OK" },
		"LOGIN": func(s *Session, args string) string {
			f := fields(args)
			if len(f) != 2 || f[0] != s.srv.Login || f[1] != s.srv.Password {
				return "NO [AUTHENTICATIONFAILED] wrong login"
			}
			s.srv.Logins.Add(1)
			return "OK [CAPABILITY IMAP4rev1] logged in"
		},
		"LIST": func(s *Session, _ string) string {
			for _, f := range s.Folders() {
				s.Printf("* LIST () \"/\" %s\r\n", quote(f.Name))
			}
			return "OK"
		},
		"STATUS": func(s *Session, args string) string {
			f := s.folder(fields(args)[0])
			if f == nil {
				return "NO no such folder"
			}
			s.Printf("* STATUS %s (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n", quote(f.Name), len(f.Messages), f.uidNext(), f.UIDValidity)
			return "OK"
		},
		"EXAMINE": selectFolder,
		"SELECT":  selectFolder,
		"UID SEARCH": func(s *Session, _ string) string {
			if s.selected == nil {
				return "BAD nothing selected"
			}
			s.Printf("* SEARCH")
			for _, m := range s.selected.Messages {
				s.Printf(" %d", m.UID)
			}
			s.Printf("\r\n")
			return "OK"
		},
		"UID FETCH": func(s *Session, args string) string {
			if s.selected == nil {
				return "BAD nothing selected"
			}
			set, items, _ := strings.Cut(args, " ")
			body := strings.Contains(strings.ToUpper(items), "BODY")
			for i, m := range s.selected.Messages {
				if !inSet(set, m.UID, s.selected.uidNext()) {
					continue
				}
				s.Printf("* %d FETCH (UID %d FLAGS (%s)", i+1, m.UID, strings.Join(m.Flags, " "))
				if !body {
					s.Printf(")\r\n")
					continue
				}
				s.Printf(" RFC822.SIZE %d INTERNALDATE \"01-Jan-2024 00:00:00 +0000\" BODY[] ", m.Len())
				if m.Announce != 0 {
					s.Printf("{%d}\r\n", m.Announce)
					s.Endless([]byte(strings.Repeat("x", 4096)), 0)
					return ""
				}
				s.Printf("{%d}\r\n", m.Len())
				if _, err := m.WriteTo(s.W); err != nil {
					return ""
				}
				s.Printf(")\r\n")
			}
			return "OK"
		},
	}
}

func selectFolder(s *Session, args string) string {
	f := s.folder(fields(args)[0])
	if f == nil {
		return "NO no such folder"
	}
	s.selected = f
	s.Printf("* %d EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n* FLAGS (\\Seen \\Flagged)\r\n",
		len(f.Messages), f.UIDValidity, f.uidNext())
	return "OK [READ-ONLY] selected"
}

func (s *Session) folder(name string) *Folder {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	for i := range s.srv.folders {
		if s.srv.folders[i].Name == name || (strings.EqualFold(name, "INBOX") && strings.EqualFold(s.srv.folders[i].Name, "INBOX")) {
			return &s.srv.folders[i]
		}
	}
	return nil
}

func (f *Folder) uidNext() uint32 {
	if len(f.Messages) == 0 {
		return 1
	}
	return f.Messages[len(f.Messages)-1].UID + 1
}

// inSet reads an IMAP UID set ("1:5,9,12:*").
func inSet(set string, uid, next uint32) bool {
	for _, r := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(r, ":")
		if !isRange {
			hi = lo
		}
		a, b := bound(lo, next), bound(hi, next)
		if a > b {
			a, b = b, a
		}
		if uid >= a && uid <= b {
			return true
		}
	}
	return false
}

func bound(s string, next uint32) uint32 {
	if s == "*" {
		return max(next-1, 1)
	}
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// fields splits command arguments into atoms and quoted strings (unquoted).
func fields(args string) []string {
	var out []string
	for args = strings.TrimSpace(args); args != ""; args = strings.TrimSpace(args) {
		if args[0] != '"' {
			word, rest, _ := strings.Cut(args, " ")
			out, args = append(out, word), rest
			continue
		}
		var sb strings.Builder
		i := 1
		for ; i < len(args) && args[i] != '"'; i++ {
			if args[i] == '\\' && i+1 < len(args) {
				i++
			}
			sb.WriteByte(args[i])
		}
		out, args = append(out, sb.String()), args[min(i+1, len(args)):]
	}
	return out
}

// quote spells s as an IMAP quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
