// Package memimap is an IMAP server held in memory, inside the process: go-imap's imapmemserver
// on a TCP listener. It is the demo's mailbox and the tests' quick server; it is not for real mail
// (nothing is persisted, there is no CONDSTORE).
//
// It is, with imapconn (the client) and imaptest (test helpers), one of the few packages that
// import go-imap.
package memimap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// User is an IMAP login.
type User struct {
	Login, Password string
}

// Server is go-imap's in-memory IMAP server on a TCP listener: no CONDSTORE, no LIST-STATUS
// unless asked (WithIMAP4rev2), folder separator "/".
type Server struct {
	mem    *imapmemserver.Server
	server *imapserver.Server

	tls *tls.Config

	mu    sync.Mutex
	ln    net.Listener
	users map[string]*imapmemserver.User
	done  chan struct{}
}

// Option adjusts a Server before it starts.
type Option func(*config)

type config struct {
	caps   imap.CapSet
	logger *slog.Logger
	tls    *tls.Config
}

// WithTLS offers STARTTLS with this configuration, and lets ListenTLS serve implicit TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithIMAP4rev2 advertises IMAP4rev2 (which implies LIST-STATUS, ESEARCH and UTF-8 names).
func WithIMAP4rev2() Option {
	return func(c *config) { c.caps[imap.CapIMAP4rev2] = struct{}{} }
}

// WithLogger sends the server's error messages to logger (default: discarded).
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
}

// New returns a server that is not listening yet.
func New(opts ...Option) *Server {
	cfg := config{caps: imap.CapSet{imap.CapIMAP4rev1: {}}, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&cfg)
	}
	mem := imapmemserver.New()
	s := &Server{mem: mem, users: map[string]*imapmemserver.User{}}
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

// Listen starts serving plain IMAP (with STARTTLS if WithTLS was given) on addr ("127.0.0.1:0"
// picks a free port) in the background.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("memimap: listen: %w", err)
	}
	return s.serve(ln)
}

// ListenTLS is Listen with implicit TLS (like port 993); it needs WithTLS.
func (s *Server) ListenTLS(addr string) error {
	if s.tls == nil {
		return errors.New("memimap: ListenTLS needs WithTLS")
	}
	ln, err := tls.Listen("tcp", addr, s.tls)
	if err != nil {
		return fmt.Errorf("memimap: listen: %w", err)
	}
	return s.serve(ln)
}

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		ln.Close()
		return errors.New("memimap: already listening")
	}
	s.ln, s.done = ln, make(chan struct{})
	go func() {
		defer close(s.done)
		_ = s.server.Serve(ln)
	}()
	return nil
}

// Addr returns host:port of the listener.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Host returns the listener's host.
func (s *Server) Host() string {
	host, _, _ := net.SplitHostPort(s.Addr())
	return host
}

// Port returns the listener's port.
func (s *Server) Port() int {
	_, port, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(port)
	return n
}

// Close stops the server and drops every connection.
func (s *Server) Close() error {
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
func (s *Server) AddUser(login, password string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[login]; ok {
		return User{}, fmt.Errorf("memimap: user %q exists already", login)
	}
	u := imapmemserver.NewUser(login, password)
	if err := u.Create("INBOX", nil); err != nil {
		return User{}, fmt.Errorf("memimap: create INBOX: %w", err)
	}
	s.mem.AddUser(u)
	s.users[login] = u
	return User{Login: login, Password: password}, nil
}

func (s *Server) user(login string) (*imapmemserver.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[login]
	if !ok {
		return nil, fmt.Errorf("memimap: no user %q", login)
	}
	return u, nil
}

// CreateFolder creates a folder ("/" separates levels).
func (s *Server) CreateFolder(login, name string) error {
	u, err := s.user(login)
	if err != nil {
		return err
	}
	if err := u.Create(name, nil); err != nil {
		return fmt.Errorf("memimap: create %q: %w", name, err)
	}
	return nil
}

// Append adds a message to a folder, which must exist, and returns its UID. A zero date means now.
func (s *Server) Append(login, folder string, raw []byte, date time.Time, flags ...string) (uint32, error) {
	u, err := s.user(login)
	if err != nil {
		return 0, err
	}
	imapFlags := make([]imap.Flag, len(flags))
	for i, f := range flags {
		imapFlags[i] = imap.Flag(f)
	}
	data, err := u.Append(folder, bytes.NewReader(raw), &imap.AppendOptions{Flags: imapFlags, Time: date})
	if err != nil {
		return 0, fmt.Errorf("memimap: append to %q: %w", folder, err)
	}
	return uint32(data.UID), nil
}

// printfLogger adapts slog to imapserver.Logger.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Warn("imap server: " + fmt.Sprintf(format, args...))
}
