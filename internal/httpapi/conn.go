package httpapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnLimits bound what anonymous clients can hold of the HTTP server: connections that send
// nothing, keep-alive connections left open, headers of any size, and connections by the
// thousand.
//
// There is deliberately no ReadTimeout or WriteTimeout: the first would cancel event streams,
// the second cut downloads of large messages. Bodies are bounded instead by the API's own read
// timeout (5 s per request body), and streams lift the write deadline.
type ConnLimits struct {
	// ReadHeaderTimeout bounds how long a request's headers may take to arrive (slow-header
	// attacks); zero: 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sent no new request for this long; zero:
	// 60 s. An open event stream is not idle.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers; zero: 64 KiB.
	MaxHeaderBytes int
	// MaxConns caps the connections open at once; past it, new ones wait in the listen backlog
	// until one closes. Zero: 1024; negative: no cap.
	MaxConns int
}

func (l ConnLimits) withDefaults() ConnLimits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 60 * time.Second
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxConns == 0 {
		l.MaxConns = 1024
	}
	return l
}

// Server returns an http.Server serving h within the limits; serve it on l.Listener(ln).
func (l ConnLimits) Server(h http.Handler) *http.Server {
	l = l.withDefaults()
	return &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, IdleTimeout: l.IdleTimeout,
		MaxHeaderBytes: l.MaxHeaderBytes}
}

// Listener wraps ln so that at most MaxConns of its connections are open at once.
func (l ConnLimits) Listener(ln net.Listener) net.Listener {
	l = l.withDefaults()
	if l.MaxConns < 0 {
		return ln
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, l.MaxConns), done: make(chan struct{})}
}

// limitListener accepts a connection only when it holds one of its slots; the connection gives
// the slot back when it closes.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
