// Package smtptest runs a real go-smtp submission server on loopback for tests: STARTTLS and
// implicit TLS with a throwaway self-signed certificate, AUTH PLAIN and XOAUTH2 against
// configured users, and knobs to make it refuse or fail at the points where a client's handling
// matters (RCPT, the reply to the final ".", a connection dropped after it). It records what it
// received. It is a test kit: it never reaches the binary.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailsync/internal/imaptest"
)

// Received is one message whose body the server read to the final ".".
type Received struct {
	From   string
	Rcpts  []string
	Data   []byte
	Authed string // the login the session authenticated as; empty: none
	Helo   string // the name the client gave in EHLO
	// Reply is the code of the final reply the server sent; 0 when it dropped the connection
	// instead of replying.
	Reply int
}

// Option changes how the server behaves.
type Option func(*Server)

// WithUser lets login authenticate with password (AUTH PLAIN).
func WithUser(login, password string) Option {
	return func(s *Server) { s.users[login] = password }
}

// WithOAuthToken lets login authenticate with the bearer token (AUTH XOAUTH2 and OAUTHBEARER).
func WithOAuthToken(login, token string) Option {
	return func(s *Server) { s.tokens[login] = token }
}

// WithMechanisms replaces the AUTH mechanisms advertised (default PLAIN, XOAUTH2, OAUTHBEARER).
func WithMechanisms(mechs ...string) Option {
	return func(s *Server) { s.mechs = mechs }
}

// WithRcptReply makes RCPT TO:<rcpt> fail with code (4xx or 5xx) and text.
func WithRcptReply(rcpt string, code int, text string) Option {
	return func(s *Server) { s.rcptReplies[strings.ToLower(rcpt)] = smtpErr(code, text) }
}

// WithDataReply makes the reply to the final "." code (4xx or 5xx) and text instead of 250.
// The body is still read and recorded, with Reply set to code.
func WithDataReply(code int, text string) Option {
	return func(s *Server) { s.dataReply = smtpErr(code, text) }
}

// WithDropAfterData makes the server read the body to the final "." and then close the
// connection without replying: the client cannot know whether the message was taken. The
// message is recorded (with Reply 0), as a real server may well have queued it.
func WithDropAfterData() Option {
	return func(s *Server) { s.dropAfterData = true }
}

// WithReplyDelay holds the reply to the final "." for d, so a client can be cancelled or time
// out while it waits for it. The wait ends early when the server closes.
func WithReplyDelay(d time.Duration) Option {
	return func(s *Server) { s.replyDelay = d }
}

// WithInsecureAuth advertises and accepts AUTH on connections without TLS (for clients that
// chose no TLS explicitly).
func WithInsecureAuth() Option {
	return func(s *Server) { s.srv.AllowInsecureAuth = true }
}

// WithoutSTARTTLS stops advertising STARTTLS on the plain listener (the implicit-TLS one stays).
func WithoutSTARTTLS() Option {
	return func(s *Server) { s.srv.TLSConfig = nil }
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	srv           *smtp.Server
	plain, tlsLn  net.Listener
	pool          *x509.CertPool
	users, tokens map[string]string
	mechs         []string
	rcptReplies   map[string]*smtp.SMTPError
	dataReply     *smtp.SMTPError
	dropAfterData bool
	replyDelay    time.Duration
	closed        chan struct{}

	mu           sync.Mutex
	messages     []Received
	dataCommands int
	authFailures int
	authAttempts int
}

// Start runs a server on two free loopback ports (STARTTLS and implicit TLS) until the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	tlsCfg, pool, err := imaptest.SelfSignedTLS()
	if err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	s := &Server{
		pool: pool, users: map[string]string{}, tokens: map[string]string{},
		mechs:       []string{sasl.Plain, "XOAUTH2", sasl.OAuthBearer},
		rcptReplies: map[string]*smtp.SMTPError{}, closed: make(chan struct{}),
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = tlsCfg
	// RFC 4954 §4 lets an AUTH response run to 12288 octets; OAuth2 tokens need it.
	s.srv.MaxLineLength = 12288
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(s)
	}
	if s.plain, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	s.tlsLn = tls.NewListener(ln, tlsCfg)
	var wg sync.WaitGroup
	for _, l := range []net.Listener{s.plain, s.tlsLn} {
		wg.Go(func() { _ = s.srv.Serve(l) })
	}
	tb.Cleanup(func() {
		close(s.closed)
		_ = s.srv.Close()
		wg.Wait()
	})
	return s
}

// Addr is the host:port of the STARTTLS (submission, "587") listener.
func (s *Server) Addr() string { return s.plain.Addr().String() }

// Port is the port of the STARTTLS listener.
func (s *Server) Port() int { return port(s.plain) }

// TLSPort is the port of the implicit-TLS ("465") listener.
func (s *Server) TLSPort() int { return port(s.tlsLn) }

// TLSConfig is a client configuration that trusts the server's certificate.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// CertPool trusts the server's certificate.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Messages are the messages whose body the server read, in order.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.messages))
	for i, m := range s.messages {
		m.Rcpts, m.Data = slices.Clone(m.Rcpts), bytes.Clone(m.Data)
		out[i] = m
	}
	return out
}

// Transactions is how many message bodies were read to the final "." (whatever the reply).
func (s *Server) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

// DataCommands is how many DATA commands the server accepted (answered 354).
func (s *Server) DataCommands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dataCommands
}

// AuthAttempts is how many AUTH commands the server took up, on any connection.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authAttempts
}

// AuthFailures is how many AUTH exchanges ended refused.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFailures
}

func port(l net.Listener) int {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func smtpErr(code int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: text}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: s, conn: c}, nil
}

func (s *Server) authFailed() error {
	s.mu.Lock()
	s.authFailures++
	s.mu.Unlock()
	return smtp.ErrAuthFailed
}

type session struct {
	srv    *Server
	conn   *smtp.Conn
	authed string
	from   string
	rcpts  []string
}

var _ smtp.AuthSession = (*session)(nil)

func (se *session) AuthMechanisms() []string { return se.srv.mechs }

func (se *session) Auth(mech string) (sasl.Server, error) {
	se.srv.mu.Lock()
	se.srv.authAttempts++
	se.srv.mu.Unlock()
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, login, password string) error {
			want, ok := se.srv.users[login]
			if !ok || want != password || (identity != "" && identity != login) {
				return se.srv.authFailed()
			}
			se.authed = login
			return nil
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{check: se.checkToken}, nil
	case sasl.OAuthBearer:
		return refusal{sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if se.checkToken(o.Username, o.Token) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) checkToken(login, token string) error {
	want, ok := se.srv.tokens[login]
	if !ok || want != token {
		return se.srv.authFailed()
	}
	se.authed = login
	return nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.authed == "" && (len(se.srv.users) > 0 || len(se.srv.tokens) > 0) {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"} // RFC 4954 §6
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e, ok := se.srv.rcptReplies[strings.ToLower(to)]; ok {
		return e
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	se.srv.mu.Lock()
	se.srv.dataCommands++
	se.srv.mu.Unlock()
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	rec := Received{From: se.from, Rcpts: append([]string(nil), se.rcpts...), Data: bytes.Clone(data), Authed: se.authed, Helo: se.conn.Hostname(), Reply: 250}
	switch {
	case se.srv.dropAfterData:
		rec.Reply = 0
	case se.srv.dataReply != nil:
		rec.Reply = se.srv.dataReply.Code
	}
	se.srv.mu.Lock()
	se.srv.messages = append(se.srv.messages, rec)
	se.srv.mu.Unlock()

	if d := se.srv.replyDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-se.srv.closed:
		}
	}
	if se.srv.dropAfterData {
		_ = se.conn.Conn().Close()
		return errors.New("smtptest: connection dropped after the data")
	}
	if se.srv.dataReply != nil {
		return se.srv.dataReply
	}
	return nil
}

func (se *session) Reset() { se.from, se.rcpts = "", nil }

func (se *session) Logout() error { return nil }

// refusal makes a failed exchange end in 535, as a real server's: go-smtp answers any other
// error of a SASL server with 454 (temporary).
type refusal struct{ sasl.Server }

func (r refusal) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := r.Server.Next(response)
	if err != nil {
		return nil, true, smtp.ErrAuthFailed
	}
	return challenge, done, nil
}

// xoauth2Server is the server side of Google's XOAUTH2: the initial response
// "user=<login>\x01auth=Bearer <token>\x01\x01"; a refused token gets a JSON error challenge,
// which the client answers with an empty line before the server's 535.
type xoauth2Server struct {
	check   func(login, token string) error
	refused bool
}

func (x *xoauth2Server) Next(response []byte) ([]byte, bool, error) {
	if x.refused {
		return nil, true, smtp.ErrAuthFailed
	}
	if response == nil {
		return []byte{}, false, nil // no initial response: ask for it
	}
	var login, token string
	for _, kv := range strings.Split(string(response), "\x01") {
		switch {
		case strings.HasPrefix(kv, "user="):
			login = strings.TrimPrefix(kv, "user=")
		case strings.HasPrefix(kv, "auth=Bearer "):
			token = strings.TrimPrefix(kv, "auth=Bearer ")
		}
	}
	if login == "" || token == "" {
		return nil, true, fmt.Errorf("smtptest: malformed XOAUTH2 response")
	}
	if x.check(login, token) != nil {
		x.refused = true
		challenge, _ := json.Marshal(map[string]string{"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
		return challenge, false, nil
	}
	return nil, true, nil
}
