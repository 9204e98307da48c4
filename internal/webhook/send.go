package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailsync/internal/netpolicy"
)

// ErrRefused is matched by a URL or an address the destination policy refuses.
var ErrRefused = errors.New("webhook destination refused")

// Policy judges the address a delivery is about to connect to (netpolicy.Policy).
type Policy interface {
	Check(host string, ip netip.Addr) error
}

// ClientConfig bounds outbound requests.
type ClientConfig struct {
	// ConnectTimeout bounds the TCP connect (and TLS handshake); Timeout the whole request,
	// response body included. Zero: 5 s and 15 s.
	ConnectTimeout, Timeout time.Duration
	// AllowPrivate lets deliveries go to loopback, private and link-local addresses (an operator
	// whose receivers run on the same network); otherwise only public addresses are reached.
	AllowPrivate bool
	// MaxResponse is how much of a response body is read (to show it in the history); zero: 4 KiB.
	MaxResponse int64
}

// Client sends deliveries. It never follows a redirect, never uses a proxy (which would connect
// where the policy cannot see), and checks the policy on the address actually dialled, after DNS
// resolution, so a name that resolves elsewhere at delivery time cannot slip past it.
type Client struct {
	cfg    ClientConfig
	policy Policy
	http   *http.Client
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) *Client {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = 4 << 10
	}
	c := &Client{cfg: cfg}
	if !cfg.AllowPrivate {
		c.policy = netpolicy.Default()
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, Control: c.control}
	c.http = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   cfg.ConnectTimeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// control is the dialer's Control hook: it runs for every address about to be connected to.
func (c *Client) control(_, address string, _ syscall.RawConn) error {
	if c.policy == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrRefused, address)
	}
	if err := c.policy.Check(ap.Addr().String(), ap.Addr()); err != nil {
		return fmt.Errorf("%w: %w (the operator may allow it with --webhook-allow-private)", ErrRefused, err)
	}
	return nil
}

// CheckURL refuses a URL that cannot be an endpoint: not http(s), no host, credentials in it,
// or (unless private addresses are allowed) a host that resolves to an address the policy
// refuses. Deliveries check again when they connect.
func (c *Client) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("the URL must be http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("the URL has no host")
	}
	if u.User != nil {
		return errors.New("the URL may not carry credentials; the signature authenticates the sender")
	}
	if u.Fragment != "" {
		return errors.New("the URL may not have a #fragment")
	}
	if c.policy == nil {
		return nil
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			return fmt.Errorf("the host %s does not resolve: %w", host, err)
		}
	}
	for _, ip := range addrs {
		if err := c.policy.Check(host, ip); err != nil {
			return fmt.Errorf("%w: %w (the operator may allow it with --webhook-allow-private)", ErrRefused, err)
		}
	}
	return nil
}

// Result is what a receiver answered.
type Result struct {
	// Status is the HTTP status; 0 when there was no answer.
	Status  int
	Latency time.Duration
	// Err is nil exactly when the receiver answered 2xx.
	Err error
}

// Post sends body to rawURL, signed with secret at now, and reports the answer. Anything but a
// 2xx is an error saying what happened; a redirect is not followed.
func (c *Client) Post(ctx context.Context, rawURL, secret string, webhookID int64, deliveryID string, body []byte, now time.Time) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("bad URL: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailsync-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(secret, now, body))
	req.Header.Set(HeaderDelivery, deliveryID)
	req.Header.Set(HeaderWebhook, strconv.FormatInt(webhookID, 10))
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{Latency: time.Since(start), Err: sendError(err)}
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let a short rest keep the connection
	r := Result{Status: resp.StatusCode, Latency: time.Since(start)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r.Err = fmt.Errorf("HTTP %d: redirects are not followed (to %q); register the final URL", resp.StatusCode, resp.Header.Get("Location"))
	default:
		msg := strings.Join(strings.Fields(string(text)), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		r.Err = fmt.Errorf("HTTP %d %s", resp.StatusCode, msg)
	}
	return r
}

// sendError says what went wrong without the URL (it is shown next to it) and without Go's
// wrapping noise.
func sendError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, ErrRefused):
		return err
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
