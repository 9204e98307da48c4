package imapconn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mailsync/internal/imapconn"
	"mailsync/internal/imaptest"
	"mailsync/internal/netpolicy"
)

// TestDestinationPolicyAtConnect: the policy judges the address after DNS resolution, so
// "localhost" is refused like 127.0.0.1, and a refused address gets no connection at all.
func TestDestinationPolicyAtConnect(t *testing.T) {
	rec := imaptest.StartRecorder(t, false)
	strict, err := netpolicy.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	loopback, err := netpolicy.New([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(host string, p imapconn.DestinationPolicy) imapconn.Config {
		return imapconn.Config{Host: host, Port: rec.Port(), TLS: imapconn.TLSNone, Login: "bob", Password: "pw",
			Destinations: p, DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second}
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := imapconn.Dial(context.Background(), cfg(host, strict))
		var ie *imapconn.Error
		if !errors.Is(err, imapconn.ErrDestinationRefused) || !errors.As(err, &ie) || !ie.Unreached() ||
			imapconn.Classify(err) != imapconn.ClassPermanent {
			t.Fatalf("%s under the default policy: %v (class %s), want a permanent refusal", host, err, imapconn.Classify(err))
		}
		if !strings.Contains(err.Error(), "a loopback address") {
			t.Errorf("the refusal does not say why: %v", err)
		}
		public := ie.Public().Error()
		if strings.Contains(public, "127.0.0.1") && host != "127.0.0.1" || !strings.Contains(public, "operator decides") {
			t.Errorf("public text %q", public)
		}
	}
	if n := rec.Connections(); n != 0 {
		t.Fatalf("a refused destination got %d connections", n)
	}

	// Allowed by the operator, it connects (and the recorder refuses the login).
	_, err = imapconn.Dial(context.Background(), cfg("localhost", loopback))
	if !errors.Is(err, imapconn.ErrAuth) || rec.Connections() != 1 {
		t.Fatalf("an allowed destination: %v after %d connections, want the recorder's refusal", err, rec.Connections())
	}
	var ie *imapconn.Error
	if errors.As(err, &ie) && (ie.Unreached() || ie.Public() != error(ie)) {
		t.Fatalf("a refused login is not a connect failure: %v", err)
	}

	// A port nobody listens on: the public text says nothing about the port's state.
	_, err = imapconn.Dial(context.Background(), imapconn.Config{Host: "127.0.0.1", Port: 1, TLS: imapconn.TLSNone,
		Login: "bob", Password: "pw", DialTimeout: 2 * time.Second})
	if !errors.As(err, &ie) || !ie.Unreached() || strings.Contains(ie.Public().Error(), "refused") {
		t.Fatalf("closed port: %v, public %v", err, ie.Public())
	}
}
