package imaptest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// MemServer is go-imap's in-memory IMAP server on a TCP listener: no CONDSTORE, no LIST-STATUS
// unless asked (WithIMAP4rev2), folder separator "/". Usable outside tests (the demo mode).
type MemServer struct {
	mem    *imapmemserver.Server
	server *imapserver.Server

	tls *tls.Config

	mu    sync.Mutex
	ln    net.Listener
	users map[string]*imapmemserver.User
	done  chan struct{}
}

// MemServerOption adjusts a MemServer before it starts.
type MemServerOption func(*memServerConfig)

type memServerConfig struct {
	caps   imap.CapSet
	logger *slog.Logger
	tls    *tls.Config
}

// WithTLS offers STARTTLS with this configuration, and lets ListenTLS serve implicit TLS.
func WithTLS(cfg *tls.Config) MemServerOption {
	return func(c *memServerConfig) { c.tls = cfg }
}

// WithIMAP4rev2 advertises IMAP4rev2 (which implies LIST-STATUS, ESEARCH and UTF-8 names).
func WithIMAP4rev2() MemServerOption {
	return func(c *memServerConfig) { c.caps[imap.CapIMAP4rev2] = struct{}{} }
}

// WithLogger sends the server's error messages to logger (default: discarded).
func WithLogger(logger *slog.Logger) MemServerOption {
	return func(c *memServerConfig) { c.logger = logger }
}

// NewMemServer returns a server that is not listening yet.
func NewMemServer(opts ...MemServerOption) *MemServer {
	cfg := memServerConfig{caps: imap.CapSet{imap.CapIMAP4rev1: {}}, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&cfg)
	}
	mem := imapmemserver.New()
	s := &MemServer{mem: mem, users: map[string]*imapmemserver.User{}}
	s.server = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         cfg.caps,
		Logger:       printfLogger{cfg.logger},
		TLSConfig:    cfg.tls,
		InsecureAuth: true,
	})
	s.tls = cfg.tls
	return s
}

// StartMemServer starts a MemServer on a free loopback port, closed when the test ends.
func StartMemServer(tb testing.TB, opts ...MemServerOption) *MemServer {
	tb.Helper()
	s := NewMemServer(opts...)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Listen starts serving plain IMAP (with STARTTLS if WithTLS was given) on addr ("127.0.0.1:0"
// picks a free port) in the background.
func (s *MemServer) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("imaptest: memserver listen: %w", err)
	}
	return s.serve(ln)
}

// ListenTLS is Listen with implicit TLS (like port 993); it needs WithTLS.
func (s *MemServer) ListenTLS(addr string) error {
	if s.tls == nil {
		return errors.New("imaptest: memserver: ListenTLS needs WithTLS")
	}
	ln, err := tls.Listen("tcp", addr, s.tls)
	if err != nil {
		return fmt.Errorf("imaptest: memserver listen: %w", err)
	}
	return s.serve(ln)
}

func (s *MemServer) serve(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		ln.Close()
		return errors.New("imaptest: memserver: already listening")
	}
	s.ln, s.done = ln, make(chan struct{})
	go func() {
		defer close(s.done)
		s.server.Serve(ln)
	}()
	return nil
}

// Addr returns host:port of the listener.
func (s *MemServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Host returns the listener's host.
func (s *MemServer) Host() string {
	host, _, _ := net.SplitHostPort(s.Addr())
	return host
}

// Port returns the listener's port.
func (s *MemServer) Port() int {
	_, port, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(port)
	return n
}

// Close stops the server and drops every connection.
func (s *MemServer) Close() error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	err := s.server.Close()
	if done != nil {
		<-done
	}
	return err
}

// AddUser creates an account with an empty INBOX.
func (s *MemServer) AddUser(login, password string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[login]; ok {
		return User{}, fmt.Errorf("imaptest: memserver: user %q exists already", login)
	}
	u := imapmemserver.NewUser(login, password)
	if err := u.Create("INBOX", nil); err != nil {
		return User{}, fmt.Errorf("imaptest: memserver: create INBOX: %w", err)
	}
	s.mem.AddUser(u)
	s.users[login] = u
	return User{Login: login, Password: password}, nil
}

func (s *MemServer) user(login string) (*imapmemserver.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[login]
	if !ok {
		return nil, fmt.Errorf("imaptest: memserver: no user %q", login)
	}
	return u, nil
}

// CreateFolder creates a folder ("/" separates levels).
func (s *MemServer) CreateFolder(login, name string) error {
	u, err := s.user(login)
	if err != nil {
		return err
	}
	if err := u.Create(name, nil); err != nil {
		return fmt.Errorf("imaptest: memserver: create %q: %w", name, err)
	}
	return nil
}

// Append adds a message to a folder, which must exist, and returns its UID. A zero date means now.
func (s *MemServer) Append(login, folder string, raw []byte, date time.Time, flags ...string) (uint32, error) {
	u, err := s.user(login)
	if err != nil {
		return 0, err
	}
	data, err := u.Append(folder, literal(raw), &imap.AppendOptions{Flags: imapFlags(flags), Time: date})
	if err != nil {
		return 0, fmt.Errorf("imaptest: memserver: append to %q: %w", folder, err)
	}
	return uint32(data.UID), nil
}

// printfLogger adapts slog to imapserver.Logger.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Warn("imap server: " + fmt.Sprintf(format, args...))
}
