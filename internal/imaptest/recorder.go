package imaptest

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Recorder is a loopback IMAP server that records every line it receives and refuses every
// command. With Echo it quotes the whole command line back in its refusal, LOGIN arguments
// included, as some servers do in their error texts: the tests use it to prove that a password
// never travels where it should not and never comes back out of mailsync in a message.
type Recorder struct {
	ln   net.Listener
	echo bool

	mu    sync.Mutex
	lines []string
	conns int
}

// StartRecorder starts a Recorder on a free loopback port, closed when the test ends.
func StartRecorder(tb testing.TB, echo bool) *Recorder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("imaptest: %v", err)
	}
	r := &Recorder{ln: ln, echo: echo}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { r.serve(c) })
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return r
}

func (r *Recorder) serve(c net.Conn) {
	defer c.Close()
	r.mu.Lock()
	r.conns++
	r.mu.Unlock()
	if _, err := c.Write([]byte("* OK [CAPABILITY IMAP4rev1] recorder ready\r\n")); err != nil {
		return
	}
	rd := bufio.NewReader(c)
	for {
		cmd, ok := r.command(c, rd)
		if !ok {
			return
		}
		tag, _, _ := strings.Cut(cmd, " ")
		answer := tag + " NO refused\r\n"
		if r.echo {
			answer = tag + " NO [AUTHENTICATIONFAILED] refused: " + cmd + "\r\n"
		}
		if _, err := c.Write([]byte(answer)); err != nil {
			return
		}
	}
}

// command reads one command, literals ({n} or {n+}) included, recording each line and each
// literal as it comes. It returns the command as one line, literals inline.
func (r *Recorder) command(c net.Conn, rd *bufio.Reader) (string, bool) {
	var cmd strings.Builder
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return "", false
		}
		line = strings.TrimRight(line, "\r\n")
		r.record(line)
		cmd.WriteString(line)
		i := strings.LastIndexByte(line, '{')
		if i < 0 || !strings.HasSuffix(line, "}") {
			return cmd.String(), true
		}
		n, err := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
		if err != nil || n < 0 || n >= 1<<16 {
			return cmd.String(), true
		}
		if !strings.HasSuffix(line, "+}") {
			if _, err := c.Write([]byte("+ go on\r\n")); err != nil {
				return "", false
			}
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", false
		}
		r.record(string(buf))
		cmd.WriteString("\r\n")
		cmd.Write(buf)
	}
}

func (r *Recorder) record(line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
}

// Host and Port say where the Recorder listens.
func (r *Recorder) Host() string { return "127.0.0.1" }
func (r *Recorder) Port() int    { return r.ln.Addr().(*net.TCPAddr).Port }

// Lines returns every line received so far, literals as lines of their own.
func (r *Recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// Connections counts the connections accepted so far.
func (r *Recorder) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// Received reports whether s appears in anything received so far.
func (r *Recorder) Received(s string) bool {
	for _, l := range r.Lines() {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
