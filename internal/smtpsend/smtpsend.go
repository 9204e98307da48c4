// Package smtpsend submits messages to an account's SMTP submission server (RFC 6409) with
// go-smtp: implicit TLS or STARTTLS, AUTH PLAIN or an OAuth2 bearer token, then one
// MAIL/RCPT/DATA transaction. Its errors say at which stage a submission failed, whether trying
// again later can help, and above all whether the message may have been sent regardless
// (Uncertain): a connection lost after the body went out leaves that unknown, and the caller
// must not blindly submit again.
package smtpsend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mailsync/internal/bearer"
)

// TLSMode says how the connection to the server is protected (the names are imapconn's).
type TLSMode string

const (
	// TLSNone speaks plain SMTP, AUTH included. Only sensible on loopback or a trusted network.
	TLSNone TLSMode = "none"
	// TLSStartTLS connects in plain text and upgrades with STARTTLS before AUTH (usually 587).
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (usually 465).
	TLSImplicit TLSMode = "tls"
)

// ParseTLSMode accepts the names used in configuration and the API.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(s); m {
	case TLSNone, TLSStartTLS, TLSImplicit:
		return m, nil
	}
	return "", fmt.Errorf("smtpsend: unknown TLS mode %q (want none, starttls or tls)", s)
}

// Default timeouts: a healthy submission server never trips them, a silent one is given up on
// within a minute.
const (
	DefaultDialTimeout    = 15 * time.Second
	DefaultCommandTimeout = 60 * time.Second
)

// Mechanism names of the OAuth2 logins.
const (
	MechXOAuth2     = bearer.XOAuth2
	MechOAuthBearer = bearer.OAuthBearer
)

// Config says where and as whom to submit.
type Config struct {
	Host string
	Port int
	TLS  TLSMode // empty means TLSImplicit: the safe choice when nobody said otherwise
	// InsecureSkipVerify accepts any server certificate. Meant for self-signed test servers only.
	InsecureSkipVerify bool

	// Login and Password log in with AUTH PLAIN when Password is not empty.
	Login, Password string
	// Token, when set, logs Login in with an OAuth2 bearer token instead of the password: AUTH
	// XOAUTH2, or OAUTHBEARER (RFC 7628) when the server offers only that. Its error is kept as
	// the Err of the auth-stage *Error, so the caller can tell a revoked grant from an outage.
	Token func(ctx context.Context) (string, error)

	// DialTimeout bounds the TCP connect and, for implicit TLS, the handshake.
	DialTimeout time.Duration
	// CommandTimeout bounds every exchange with the server: the greeting, each command and its
	// reply, each chunk of the body written, and the wait for the reply to the final ".".
	CommandTimeout time.Duration
	// Dial opens the TCP connection; nil: a net.Dialer. Callers pass a dialer that enforces
	// their destination policy.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LocalName is the name given in EHLO; empty: "localhost". With STARTTLS the EHLO before
	// the upgrade always says "localhost" (go-smtp greets on its own there).
	LocalName string
}

// Addr returns host:port.
func (cfg *Config) Addr() string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Host == "" {
		return cfg, errors.New("smtpsend: config: empty host")
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("smtpsend: config: port %d out of range", cfg.Port)
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSImplicit
	}
	if _, err := ParseTLSMode(string(cfg.TLS)); err != nil {
		return cfg, err
	}
	if (cfg.Password != "" || cfg.Token != nil) && cfg.Login == "" {
		return cfg, errors.New("smtpsend: config: a password or token without a login")
	}
	if strings.ContainsAny(cfg.LocalName, "\r\n ") {
		return cfg, errors.New("smtpsend: config: local name with a space or line break")
	}
	if cfg.LocalName == "" {
		cfg.LocalName = "localhost"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	return cfg, nil
}

// Stages of a submission, as Error.Stage.
const (
	StageConnect = "connect" // TCP connect, greeting, EHLO
	StageTLS     = "tls"     // the TLS handshake or the STARTTLS exchange
	StageAuth    = "auth"
	StageMail    = "mail"
	StageRcpt    = "rcpt"
	// StageData is the DATA command and the server's reply to the final ".": a reply there is a
	// definite answer.
	StageData = "data"
	// StageAfterData is a failure while the body was written or its reply awaited: the server
	// may have taken the message (see Uncertain).
	StageAfterData = "after-data"
)

// Error is a failed submission or check.
type Error struct {
	Stage string
	// Temporary says trying again later may succeed: a 4xx reply, or a network failure or
	// timeout before the body was sent. It is false after-data: trying again may send twice.
	Temporary bool
	Code      int    // the server's reply code; 0 when it did not reply
	Text      string // the server's reply text (without the code), never with the password or token
	Recipient string // the refused recipient, at the rcpt stage
	Err       error
}

func (e *Error) Error() string {
	stage := "smtp " + e.Stage
	if e.Recipient != "" {
		stage += " <" + e.Recipient + ">"
	}
	switch {
	case e.Code != 0:
		return fmt.Sprintf("%s: %d %s", stage, e.Code, e.Text)
	case e.Err != nil:
		return stage + ": " + e.Err.Error()
	}
	return stage + ": " + e.Text
}

func (e *Error) Unwrap() error { return e.Err }

// Uncertain reports whether err leaves it unknown whether the message was sent: the DATA
// command was accepted, and the connection broke or timed out while the body was written or
// before the server replied to it. A reply, even a refusal, is never uncertain.
func Uncertain(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Stage == StageAfterData
}

// Send submits msg (CRLF line ends, as compose writes it) from the envelope address from to
// rcpts. beforeData is called once every RCPT was accepted, right before the DATA command:
// the caller records there that the message is being submitted; when it returns an error,
// nothing is sent and the error is returned wrapped. answer is the server's final reply, code
// included ("250 2.0.0 Ok: queued as X").
func Send(ctx context.Context, cfg Config, from string, rcpts []string, msg []byte, beforeData func() error) (answer string, err error) {
	if len(rcpts) == 0 {
		return "", errors.New("smtpsend: no recipients")
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer s.close()

	if err := s.c.Mail(from, nil); err != nil {
		return "", s.fail(StageMail, err)
	}
	for _, rcpt := range rcpts {
		if err := s.c.Rcpt(rcpt, nil); err != nil {
			e := s.fail(StageRcpt, err)
			e.Recipient = rcpt
			return "", e
		}
	}
	if beforeData != nil {
		if err := beforeData(); err != nil {
			s.quit()
			return "", fmt.Errorf("smtpsend: before DATA: %w", err)
		}
	}

	var w *smtp.DataCommand
	if err := s.step(func() (err error) { w, err = s.c.Data(); return err }); err != nil {
		return "", s.fail(StageData, err)
	}
	// From here on a broken connection leaves the outcome unknown.
	for rest := msg; len(rest) > 0; {
		n := min(len(rest), 64<<10)
		if err := s.step(func() error { _, err := w.Write(rest[:n]); return err }); err != nil {
			return "", s.fail(StageAfterData, err)
		}
		rest = rest[n:]
	}
	var resp *smtp.DataResponse
	if err := s.step(func() (err error) { resp, err = w.CloseWithResponse(); return err }); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return "", s.fail(StageData, err) // a refusal of the message: definite
		}
		return "", s.fail(StageAfterData, err)
	}
	s.quit() // the message is taken: a failing QUIT changes nothing
	return "250 " + s.redact(resp.StatusText), nil
}

// Check connects, secures the connection, logs in and QUITs: it tests an account's SMTP
// settings without sending anything.
func Check(ctx context.Context, cfg Config) error {
	s, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.step(s.c.Quit); err != nil {
		return s.fail(StageConnect, err)
	}
	return nil
}

// session is one connection: the client, the TCP connection under it and what ended it early.
type session struct {
	cfg     Config
	ctx     context.Context
	raw     net.Conn
	c       *smtp.Client
	secrets []string
	stop    func() bool

	mu     sync.Mutex
	reason error // why the connection was closed under the client: a timeout or ctx's end
}

// open connects, upgrades to TLS and logs in.
func open(ctx context.Context, cfg Config) (*session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &session{cfg: cfg, ctx: ctx}
	if cfg.Password != "" {
		s.secrets = append(s.secrets, cfg.Password)
	}

	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	raw, err := cfg.Dial(dctx, "tcp", cfg.Addr())
	if err != nil {
		return nil, s.classify(StageConnect, fmt.Errorf("connect to %s: %w", cfg.Addr(), err))
	}
	s.raw = raw
	s.stop = context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })

	tlsCfg := &tls.Config{ServerName: cfg.Host, InsecureSkipVerify: cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	switch cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(raw, tlsCfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			s.close()
			return nil, s.classify(StageTLS, fmt.Errorf("TLS handshake with %s: %w", cfg.Addr(), err))
		}
		s.c = smtp.NewClient(tc)
	case TLSStartTLS:
		// go-smtp greets, says EHLO and sends STARTTLS in one call; the handshake itself happens
		// on the first command after it, the EHLO below.
		err := s.step(func() (err error) { s.c, err = smtp.NewClientStartTLS(raw, tlsCfg); return err })
		if err != nil {
			s.close()
			stage := StageTLS
			if isNetwork(err) {
				stage = StageConnect
			}
			return nil, s.fail(stage, err)
		}
	default:
		s.c = smtp.NewClient(raw)
	}
	s.c.CommandTimeout = cfg.CommandTimeout
	s.c.SubmissionTimeout = cfg.CommandTimeout

	if err := s.step(func() error { return s.c.Hello(cfg.LocalName) }); err != nil {
		s.close()
		stage := StageConnect
		if isTLSFailure(err) {
			stage = StageTLS
		}
		return nil, s.fail(stage, err)
	}
	if err := s.auth(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// auth logs in with the token or the password, if the config has one.
func (s *session) auth() error {
	if s.cfg.Token == nil && s.cfg.Password == "" {
		return nil
	}
	if _, isTLS := s.c.TLSConnectionState(); !isTLS && s.cfg.TLS != TLSNone {
		return &Error{Stage: StageAuth, Text: "refusing to log in over a connection without TLS"}
	}
	var cl sasl.Client
	if s.cfg.Token != nil {
		mech := ""
		switch {
		case s.c.SupportsAuth(MechXOAuth2):
			mech = MechXOAuth2
		case s.c.SupportsAuth(MechOAuthBearer):
			mech = MechOAuthBearer
		default:
			return &Error{Stage: StageAuth, Text: "the server offers neither AUTH XOAUTH2 nor OAUTHBEARER"}
		}
		token, err := s.cfg.Token(s.ctx)
		if err != nil {
			// A token source fails mostly for a provider outage; a revoked grant is told apart
			// through Err (oauth.ErrReauthRequired).
			return &Error{Stage: StageAuth, Temporary: true, Err: fmt.Errorf("OAuth2 token: %w", err)}
		}
		if token == "" {
			return &Error{Stage: StageAuth, Text: "empty OAuth2 token"}
		}
		s.secrets = append(s.secrets, token)
		cl = newOAuthClient(mech, s.cfg.Login, token, s.cfg.Host, s.cfg.Port)
	} else {
		if !s.c.SupportsAuth(sasl.Plain) {
			return &Error{Stage: StageAuth, Text: "the server does not offer AUTH PLAIN"}
		}
		cl = sasl.NewPlainClient("", s.cfg.Login, s.cfg.Password)
	}
	if err := s.step(func() error { return s.c.Auth(cl) }); err != nil {
		return s.fail(StageAuth, err)
	}
	return nil
}

// step runs one exchange with the server, closing the connection under it when it takes longer
// than the command timeout: go-smtp's own deadlines do not cover the STARTTLS setup or the body.
func (s *session) step(f func() error) error {
	t := time.AfterFunc(s.cfg.CommandTimeout, func() {
		s.abort(fmt.Errorf("no answer from the server in %v: %w", s.cfg.CommandTimeout, errTimeout))
	})
	defer t.Stop()
	return f()
}

var errTimeout = errors.New("timed out")

func (s *session) abort(reason error) {
	s.mu.Lock()
	if s.reason == nil {
		s.reason = reason
	}
	s.mu.Unlock()
	_ = s.raw.Close()
}

func (s *session) quit() {
	_ = s.step(s.c.Quit)
}

func (s *session) close() {
	if s.stop != nil {
		s.stop()
	}
	if s.c != nil {
		_ = s.c.Close()
	}
	_ = s.raw.Close()
}

// fail turns err at stage into an *Error, naming the timeout or cancellation that caused it.
func (s *session) fail(stage string, err error) *Error {
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	if reason != nil {
		err = fmt.Errorf("%w (%w)", reason, err)
	}
	return s.classify(stage, err)
}

func (s *session) classify(stage string, err error) *Error {
	e := &Error{Stage: stage}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e.Code, e.Text = se.Code, s.redact(se.Message)
		e.Temporary = se.Code/100 == 4
		red := *se
		red.Message = e.Text
		e.Err = &red
		return e
	}
	e.Err = err
	if s.redact(err.Error()) != err.Error() {
		e.Err = errors.New(s.redact(err.Error()))
	}
	e.Temporary = stage != StageAfterData && (isNetwork(err) || errors.Is(err, errTimeout) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
	return e
}

// redact replaces the password and the token in text from the server.
func (s *session) redact(text string) string {
	for _, secret := range s.secrets {
		text = strings.ReplaceAll(text, secret, "[redacted]")
	}
	return text
}

// isNetwork reports a failure of the connection itself (refused, reset, closed, timed out).
func isNetwork(err error) bool {
	if isTLSFailure(err) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// isTLSFailure reports a failed handshake: an untrusted certificate or a TLS alert. Trying
// again does not help; a configuration change does.
func isTLSFailure(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		rh tls.RecordHeaderError
		ae tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &ae)
}

// oauthClient is a SASL client for XOAUTH2 and OAUTHBEARER. On an error challenge (the JSON
// status a server sends before refusing the token) it answers as the mechanisms prescribe, an
// empty response for XOAUTH2 and %x01 for OAUTHBEARER, so the server ends the exchange with
// its 535 and the refusal has a code; go-sasl's OAUTHBEARER client aborts with "*" instead.
type oauthClient struct {
	mech string
	ir   []byte
}

func newOAuthClient(mech, user, token, host string, port int) *oauthClient {
	return &oauthClient{mech: mech, ir: bearer.InitialResponse(mech, user, token, host, port)}
}

func (cl *oauthClient) Start() (string, []byte, error) { return cl.mech, cl.ir, nil }

func (cl *oauthClient) Next([]byte) ([]byte, error) {
	if cl.mech == MechOAuthBearer {
		return []byte{0x01}, nil
	}
	return []byte{}, nil
}

// Guess is the usual submission server of an account whose IMAP server is imapHost:
// smtp.example.org for imap.example.org (else the host itself), port 587 with STARTTLS. savesSent
// says whether that server is known to file sent mail in Sent by itself (Gmail's does). A guess is
// kept only once a test login with the account's credentials has worked.
func Guess(imapHost string) (host string, port int, tls TLSMode, savesSent bool) {
	host = imapHost
	if rest, ok := strings.CutPrefix(imapHost, "imap."); ok {
		host = "smtp." + rest
	}
	return host, 587, TLSStartTLS, imapHost == "imap.gmail.com"
}
