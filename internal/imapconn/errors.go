package imapconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/emersion/go-imap/v2"

	"mailsync/internal/secret"
)

// Class tells a caller what to do about an error: ask the user for a new password, wait, retry, or
// give up and report.
type Class string

const (
	// ClassAuth: the server refused the login or password. Retrying will not help.
	ClassAuth Class = "auth"
	// ClassThrottled: the server limits connections or rate ([LIMIT], [UNAVAILABLE], "too many
	// connections"). Retry later, with fewer connections.
	ClassThrottled Class = "throttled"
	// ClassTransient: the network or the server went away (refused, reset, EOF mid-command,
	// timeout, cancelled). Retrying, on a new connection, is expected to work.
	ClassTransient Class = "transient"
	// ClassPermanent: anything else (TLS verification failure, NO on SELECT, BAD, protocol
	// errors). Retrying the same thing gives the same answer.
	ClassPermanent Class = "permanent"
)

// Sentinels for errors.Is: every *Error matches the sentinel of its class.
var (
	ErrAuth      = errors.New("imap: authentication failed")
	ErrThrottled = errors.New("imap: throttled by server")
	ErrTransient = errors.New("imap: transient failure")
	ErrPermanent = errors.New("imap: permanent failure")
)

// Error is every error this package returns from a server interaction.
type Error struct {
	// Op says what was being done, for a human: `login to mail.example.com:993 as bob`,
	// `select "Archive"`.
	Op    string
	Class Class
	// Err is the cause: a server status response, a network error, or the context's error. In an
	// error from a Conn it holds no secret: see seal.
	Err error

	// login and password are redacted from the message, whatever the cause says (see seal).
	login, password string
	// blobs are further secrets to redact: the SASL initial responses of an OAuth2 login, whose
	// base64 does not contain the token's.
	blobs []string
	// unreached: the failure came before the server could be asked to log in (see Unreached).
	unreached bool
	// noSuchFolder: a SELECT failed because the folder does not exist (see IsNoSuchFolder).
	noSuchFolder bool
}

func (e *Error) Error() string {
	return redactAll("imap: "+e.Op+": "+describe(e.Class, e.Err), e.login, e.password, e.blobs)
}

func redactAll(text, login, password string, blobs []string) string {
	text = secret.RedactPlain(text, login, password)
	for _, b := range blobs {
		text = secret.Redact(text, b)
	}
	return text
}

// Unreached reports whether the failure came before the server was asked to log in: the TCP
// connect (refused, timed out, no such host, a destination the policy refuses), the TLS
// handshake or the greeting. Such a message describes a machine on the network (its banner, its
// certificate names, whether a port is open), which is the operator's business: callers show
// those who are not operators a generic text and log the detail.
func (e *Error) Unreached() bool { return e.unreached }

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAuth) and friends work on the class.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrAuth:
		return e.Class == ClassAuth
	case ErrThrottled:
		return e.Class == ClassThrottled
	case ErrTransient:
		return e.Class == ClassTransient
	case ErrPermanent:
		return e.Class == ClassPermanent
	}
	return false
}

// seal readies an error to leave the package: the password, in every encoded form, is redacted
// from the message and removed from the cause, so no log line, stored task error or API answer
// can carry it, whatever the server echoed. A cause whose text held it is replaced by its
// redacted text (the class was decided already).
func (c *Conn) seal(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	e.login, e.password, e.blobs = c.cfg.Login, c.cfg.Password, c.blobs
	if se, ok := e.Err.(*imap.Error); ok {
		redacted := *se
		redacted.Text = redactAll(se.Text, e.login, e.password, e.blobs)
		e.Err = &redacted
	} else if e.Err != nil {
		if text := e.Err.Error(); redactAll(text, e.login, e.password, e.blobs) != text {
			e.Err = errors.New(redactAll(text, e.login, e.password, e.blobs))
		}
	}
	return err
}

// loginAnswer is what is kept of the server's refusal of a LOGIN or AUTHENTICATE: its status and
// a known response code, never its text. Servers have been seen quoting the whole command line,
// password included, in that text, and a short or oddly encoded password would slip through any
// redaction of it.
func loginAnswer(se *imap.Error) *imap.Error {
	kept := &imap.Error{Type: se.Type}
	switch se.Code {
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed, imap.ResponseCodeExpired,
		imap.ResponseCodePrivacyRequired, imap.ResponseCodeContactAdmin, imap.ResponseCodeLimit,
		imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeServerBug, imap.ResponseCodeClientBug,
		imap.ResponseCodeCannot, imap.ResponseCodeNoPerm, imap.ResponseCodeAlert, imap.ResponseCodeParse:
		kept.Code = se.Code
	}
	return kept
}

// errLoginAnswerUnreadable replaces go-imap's message about an answer to LOGIN it could not parse.
var errLoginAnswerUnreadable = errors.New("the server's answer to the login could not be parsed (its text is withheld: it answers the login)")

// Classify returns the class of err: the class of the *Error in its chain if there is one, else a
// best guess from the cause (network errors are transient, context errors are transient, unknown
// errors are permanent). Classify(nil) is "".
func Classify(err error) Class {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return classifyCause(err)
}

func describe(class Class, err error) string {
	var se *imap.Error
	if errors.As(err, &se) {
		said := "server said " + statusText(se)
		switch class {
		case ClassAuth:
			return "authentication failed (" + said + ")"
		case ClassThrottled:
			return "the server is limiting connections, try again later (" + said + ")"
		default:
			return said
		}
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return "the server does not speak TLS on this port (try TLS mode starttls or none): " + err.Error()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server"
	}
	return err.Error()
}

func statusText(se *imap.Error) string {
	var sb strings.Builder
	sb.WriteString(string(se.Type))
	if se.Code != "" {
		fmt.Fprintf(&sb, " [%s]", se.Code)
	}
	if se.Text != "" {
		sb.WriteString(" ")
		sb.WriteString(se.Text)
	}
	return sb.String()
}

// classifyCause guesses the class of an error that did not come through an *Error.
func classifyCause(err error) Class {
	var se *imap.Error
	if errors.As(err, &se) {
		return classifyStatus(se)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errTimeout) {
		return ClassTransient
	}
	if isTLSFailure(err) {
		return ClassPermanent
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return ClassPermanent
		}
		return ClassTransient
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ETIMEDOUT) {
		return ClassTransient
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTransient
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return ClassTransient
	}
	return ClassPermanent
}

// classifyStatus reads a NO/BAD/BYE status response. Login failures are decided by the caller,
// which knows that a bare NO on LOGIN means a wrong password.
func classifyStatus(se *imap.Error) Class {
	if isThrottle(se) {
		return ClassThrottled
	}
	switch se.Code {
	case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed,
		imap.ResponseCodeExpired:
		return ClassAuth
	case imap.ResponseCodeInUse:
		return ClassTransient
	}
	if se.Type == imap.StatusResponseTypeBye {
		return ClassTransient
	}
	return ClassPermanent
}

func isThrottle(se *imap.Error) bool {
	switch se.Code {
	case imap.ResponseCodeLimit, imap.ResponseCodeUnavailable:
		return true
	}
	// Phrases servers use when they refuse because of load or connection limits without a
	// [LIMIT] or [UNAVAILABLE] code (Gmail, Dovecot, Exchange, Yahoo).
	throttleWords := [...]string{
		"too many", "maximum number of connections", "connection limit", "rate limit",
		"try again later", "throttl", "temporarily unavailable",
	}
	text := strings.ToLower(se.Text)
	for _, w := range throttleWords {
		if strings.Contains(text, w) {
			return true
		}
	}
	return false
}

func isTLSFailure(err error) bool {
	var (
		rh       tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &rh) || errors.As(err, &verify) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}
