package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// startTLSLine bounds the lines read before TLS: a greeting, a capability list, the answer.
const startTLSLine = 8 << 10

// startTLS upgrades a fresh plain connection with STARTTLS (RFC 9051 §6.2.1) and returns the TLS
// connection and a greeting for go-imap to read first, since the server will not greet twice.
// Nothing the server said before TLS is kept: the greeting handed on is a plain "* OK", so
// capabilities are learnt under TLS. A server that refuses answers an *imap.Error; a BYE
// greeting is handed on unchanged, over the plain connection, for go-imap to report.
func (c *Conn) startTLS(ctx context.Context, sock net.Conn, cfg *tls.Config) (net.Conn, []byte, error) {
	br := bufio.NewReaderSize(sock, startTLSLine)
	readLine := func() (string, error) {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", &LimitError{What: fmt.Sprintf("sent a line longer than %s before TLS", bytesText(startTLSLine))}
		}
		return string(line), err
	}
	greeting, err := readLine()
	if err != nil {
		return nil, nil, err
	}
	switch {
	case hasPrefixFold([]byte(greeting), "* BYE"):
		return sock, []byte(greeting), nil
	case hasPrefixFold([]byte(greeting), "* PREAUTH"):
		return nil, nil, &ProtocolError{Err: errors.New("PREAUTH greeting on a connection that must start TLS first")}
	case !hasPrefixFold([]byte(greeting), "* OK"):
		return nil, nil, &ProtocolError{Err: fmt.Errorf("greeting %q", strings.TrimSpace(greeting))}
	}
	if _, err := sock.Write([]byte("S1 STARTTLS\r\n")); err != nil {
		return nil, nil, err
	}
	for range 64 {
		line, err := readLine()
		if err != nil {
			return nil, nil, err
		}
		rest, tagged := strings.CutPrefix(line, "S1 ")
		if !tagged {
			continue // untagged data (a CAPABILITY) before the answer
		}
		status, text, _ := strings.Cut(strings.TrimRight(rest, "\r\n"), " ")
		switch strings.ToUpper(status) {
		case "OK":
		case "NO", "BAD":
			return nil, nil, &imap.Error{Type: imap.StatusResponseType(strings.ToUpper(status)), Text: text}
		default:
			return nil, nil, &ProtocolError{Err: fmt.Errorf("STARTTLS answer %q", strings.TrimSpace(line))}
		}
		if br.Buffered() > 0 {
			// Plain text after the OK would be read as if it had come under TLS (CVE-2011-0411).
			return nil, nil, &ProtocolError{Err: errors.New("data after the STARTTLS answer, before TLS")}
		}
		tlsConn := tls.Client(sock, cfg)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return nil, nil, err
		}
		return tlsConn, []byte("* OK TLS established\r\n"), nil
	}
	return nil, nil, &ProtocolError{Err: errors.New("no answer to STARTTLS within 64 lines")}
}
