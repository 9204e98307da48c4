package syncer_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy relays IMAP between the syncer and a server, and breaks things on the way back.
type proxy struct {
	ln     net.Listener
	target string
	// poison, when set, marks the FETCH responses carrying a body whose line contains it: they
	// get an X-GM-MSGID item, which go-imap cannot take (it closes the connection).
	poison string
	// cutAfter, when positive, makes the next connection drop after that many bytes from the
	// server, once.
	cutAfter atomic.Int64
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.relay(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) relay(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(server, client)
		server.Close()
	}()
	cut := p.cutAfter.Swap(0)
	r := bufio.NewReaderSize(server, 1<<16)
	var sent int64
	for {
		line, err := r.ReadString('\n')
		if p.poison != "" && strings.HasPrefix(line, "* ") && strings.Contains(line, "BODY[] {") &&
			strings.Contains(line, p.poison) {
			line = strings.Replace(line, "FETCH (", "FETCH (X-GM-MSGID 1 ", 1)
		}
		if cut > 0 && sent+int64(len(line)) > cut {
			_, _ = client.Write([]byte(line[:cut-sent]))
			return // both ends close: the client sees the connection drop mid-response
		}
		if _, werr := client.Write([]byte(line)); werr != nil {
			return
		}
		sent += int64(len(line))
		if err != nil {
			return
		}
	}
}
