package main

import (
	"errors"
	"io"
	"log"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpServer is a submission server on loopback, in this process: plain text (tls_mode none),
// AUTH PLAIN for the one bench login, every message read whole and counted.
type smtpServer struct {
	srv      *smtp.Server
	ln       net.Listener
	received atomic.Int64
}

func startSMTP() (*smtpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &smtpServer{ln: ln}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *smtpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpServer) Close() error { return s.srv.Close() }

type smtpSession struct {
	srv    *smtpServer
	authed bool
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (se *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != login || pass != password {
			return smtp.ErrAuthFailed
		}
		se.authed = true
		return nil
	}), nil
}

func (se *smtpSession) Mail(string, *smtp.MailOptions) error {
	if !se.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (se *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (se *smtpSession) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("empty message")
	}
	se.srv.received.Add(1)
	return nil
}

func (se *smtpSession) Reset() {}

func (se *smtpSession) Logout() error { return nil }
