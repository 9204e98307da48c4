package imapconn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// TLSMode says how the connection to the server is protected.
type TLSMode string

const (
	// TLSNone speaks plain IMAP. Only sensible on loopback or a trusted network.
	TLSNone TLSMode = "none"
	// TLSStartTLS connects in plain text and upgrades with STARTTLS before LOGIN.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (usually port 993).
	TLSImplicit TLSMode = "tls"
)

// ParseTLSMode accepts the names used in configuration and URLs.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(s); m {
	case TLSNone, TLSStartTLS, TLSImplicit:
		return m, nil
	}
	return "", fmt.Errorf("imapconn: unknown TLS mode %q (want none, starttls or tls)", s)
}

// Default timeouts, chosen so that a healthy server never trips them while a silent one is noticed
// long before the sync task is declared dead (60 s without a heartbeat).
const (
	DefaultDialTimeout    = 15 * time.Second
	DefaultCommandTimeout = 60 * time.Second
	// DefaultStallAfter is when a silent command is reported through Config.Stalled: long
	// enough that a healthy server's slow SELECT or SEARCH rarely shows, short enough that a
	// frozen one shows well before the command timeout ends the command.
	DefaultStallAfter = 15 * time.Second
)

// Config says where and as whom to connect.
type Config struct {
	Host string
	Port int
	TLS  TLSMode // empty means TLSImplicit: the safe choice when nobody said otherwise
	// InsecureSkipVerify accepts any server certificate. Meant for self-signed test servers only.
	InsecureSkipVerify bool

	Login    string
	Password string
	// OAuthToken, when set, makes the login an AUTHENTICATE with an OAuth2 bearer token for
	// Login (the mailbox address the token is for) instead of LOGIN with Password: OAUTHBEARER
	// (RFC 7628) or XOAUTH2, whichever the server advertises (OAUTHBEARER first). It returns the
	// token to use; refused is the token the server has just refused, empty on the first call.
	// When the server refuses a token, OAuthToken is asked once more with it, and a different
	// token is tried (the caller refreshes a stale one; see oauth.Tokens.Token).
	OAuthToken func(ctx context.Context, refused string) (string, error)
	// OAuthMechanism forces "XOAUTH2" or "OAUTHBEARER" instead of choosing by the server's
	// capabilities (tests exercise both on one server).
	OAuthMechanism string

	// Destinations, when set, is asked about every address the connection is about to reach,
	// after DNS resolution; a refused address is never connected to (see control).
	Destinations DestinationPolicy

	// DialTimeout bounds the TCP connect, the TLS handshake and the server greeting together.
	DialTimeout time.Duration
	// CommandTimeout bounds how long one command may go without progress: for a streaming fetch the
	// clock restarts at every message, so a large fetch is never cut while it is moving. When it
	// expires the connection is closed; the Conn is then unusable.
	CommandTimeout time.Duration
	// Limits bound what the server can make this client hold or wait for; zero fields take
	// their defaults.
	Limits Limits
	// StallAfter is how long a command (or the dial) may go without progress before Stalled is
	// told; never more than half of the timeout in force, so the report always comes first.
	StallAfter time.Duration
	// Stalled, when set, is called with the time the server went quiet once a command has made no
	// progress for StallAfter, and with the zero time as soon as it makes progress again or ends.
	// It runs on a timer or the command's goroutine: it must return at once and not use the Conn.
	Stalled func(since time.Time)

	// Logger receives debug records about the connection. Nil discards them. The password is
	// never logged.
	Logger *slog.Logger
}

// Addr returns host:port.
func (cfg *Config) Addr() string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Host == "" {
		return cfg, fmt.Errorf("imapconn: config: empty host")
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("imapconn: config: port %d out of range", cfg.Port)
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSImplicit
	}
	if _, err := ParseTLSMode(string(cfg.TLS)); err != nil {
		return cfg, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = DefaultStallAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
