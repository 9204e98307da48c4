// Package netpolicy is the operator's destination policy: which addresses the IMAP accounts of
// users who are not administrators may make the server connect to. Without it, any user could
// point an account at any host and port of the server's own network (loopback services, the
// LAN, a cloud metadata endpoint) and read banners, certificate names and port states back from
// the error texts. The policy is checked on the address actually dialled, after DNS resolution
// (imapconn's dialer Control hook), so a name that resolves elsewhere at connect time cannot slip
// past it.
package netpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Policy refuses the special and private address ranges unless the operator allowed them. The
// zero value is not usable; New(nil) is the default policy.
type Policy struct {
	nets  []netip.Prefix
	hosts map[string]bool
}

// ErrRefused is matched (errors.Is) by every refusal.
var ErrRefused = errors.New("destination not allowed")

// refusal says which address was refused and why.
type refusal struct{ msg string }

func (r refusal) Error() string        { return r.msg }
func (r refusal) Is(target error) bool { return target == ErrRefused }

// refusedRanges are refused unless allowed: what is not a public unicast address on the Internet.
var refusedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a 'this network' address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (carrier-grade NAT) address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("fc00::/7"), "a private (unique local) address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
}

// nat64 embeds an IPv4 address in its last 32 bits: 64:ff9b::7f00:1 reaches 127.0.0.1 through a
// NAT64 gateway, so it is judged as that address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Default is the policy with nothing allowed beyond public addresses.
func Default() *Policy { return &Policy{hosts: map[string]bool{}} }

// New returns the policy allowing, beyond public addresses, every entry of allow: a CIDR
// ("192.168.1.0/24"), an address ("10.0.0.5") or a host name ("mail.lan", matched against the
// account's host as typed, whatever it resolves to: allowing a name trusts its DNS). Empty
// entries are ignored.
func New(allow []string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	for _, entry := range allow {
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
		case strings.Contains(entry, "/"):
			prefix, err := netip.ParsePrefix(entry)
			if err != nil {
				return nil, fmt.Errorf("netpolicy: %q is not a CIDR (want e.g. 192.168.1.0/24): %w", entry, err)
			}
			p.nets = append(p.nets, prefix.Masked())
		default:
			if addr, err := netip.ParseAddr(strings.Trim(entry, "[]")); err == nil {
				p.nets = append(p.nets, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
				continue
			}
			if strings.ContainsAny(entry, " :,") {
				return nil, fmt.Errorf("netpolicy: %q is neither a CIDR, an address nor a host name", entry)
			}
			p.hosts[normalHost(entry)] = true
		}
	}
	return p, nil
}

func normalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// Check returns nil when an account whose host is host may connect to ip, else an error
// matching ErrRefused that says why.
func (p *Policy) Check(host string, ip netip.Addr) error {
	if p.hosts[normalHost(host)] {
		return nil
	}
	ip = ip.Unmap()
	judged := ip
	if nat64.Contains(ip) {
		b := ip.As16()
		judged = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, n := range p.nets {
		if n.Contains(ip) || n.Contains(judged) {
			return nil
		}
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(judged) {
			if host == ip.String() {
				return refusal{fmt.Sprintf("%s is %s", ip, r.what)}
			}
			return refusal{fmt.Sprintf("%s resolves to %s, %s", host, ip, r.what)}
		}
	}
	return nil
}
