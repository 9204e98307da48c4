package netpolicy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestDefaultPolicy(t *testing.T) {
	p, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, ip string
		refused  bool
	}{
		{"imap.example.org", "93.184.215.14", false},
		{"imap.example.org", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", false},
		{"localhost", "127.0.0.1", true},
		{"127.0.0.2", "127.0.0.2", true},
		{"::1", "::1", true},
		{"mapped", "::ffff:127.0.0.1", true},
		{"nat64", "64:ff9b::7f00:1", true},
		{"nat64 public", "64:ff9b::5db8:d70e", false},
		{"lan", "192.168.1.10", true},
		{"lan", "10.1.2.3", true},
		{"lan", "172.20.0.1", true},
		{"not private", "172.32.0.1", false},
		{"metadata", "169.254.169.254", true},
		{"cgnat", "100.100.100.200", true},
		{"any", "0.0.0.0", true},
		{"ula", "fd00::1", true},
		{"link-local", "fe80::1", true},
		{"multicast", "239.1.1.1", true},
	} {
		err := p.Check(tt.host, netip.MustParseAddr(tt.ip))
		if (err != nil) != tt.refused || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("Check(%s, %s) = %v, want refused=%v", tt.host, tt.ip, err, tt.refused)
		}
	}
	err = p.Check("localhost", netip.MustParseAddr("127.0.0.1"))
	if err == nil || !strings.Contains(err.Error(), "localhost resolves to 127.0.0.1, a loopback address") {
		t.Errorf("the refusal does not say why: %v", err)
	}
}

func TestAllowList(t *testing.T) {
	p, err := New([]string{"192.168.1.0/24", " 10.0.0.5 ", "Mail.LAN.", "::1", ""})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, ip string
		refused  bool
	}{
		{"nas", "192.168.1.77", false},
		{"nas", "192.168.2.77", true},
		{"x", "10.0.0.5", false},
		{"x", "10.0.0.6", true},
		{"mail.lan", "10.9.9.9", false}, // a host allowed by name may resolve anywhere
		{"other.lan", "10.9.9.9", true},
		{"localhost", "::1", false},
		{"localhost", "127.0.0.1", true},
	} {
		if err := p.Check(tt.host, netip.MustParseAddr(tt.ip)); (err != nil) != tt.refused {
			t.Errorf("Check(%s, %s) = %v, want refused=%v", tt.host, tt.ip, err, tt.refused)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "a b", "1.2.3.4/x"} {
		if _, err := New([]string{bad}); err == nil {
			t.Errorf("New(%q) accepted it", bad)
		}
	}
}
