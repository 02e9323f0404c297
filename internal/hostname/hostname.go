// Package hostname owns name normalisation: every name the proxy sees (CONNECT
// host, absolute-URI host, Host header, SNI, domain patterns in the config) goes
// through Normalize before it is matched, so that "WWW.TikTok.com.:443" and
// "www.tiktok.com" are the same name and nothing that is not a hostname is ever
// matched as one (SPEC §2.2 and §8 "Names").
package hostname

import (
	"errors"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// MaxLength is the longest name accepted, without its trailing dot.
const MaxLength = 253

// MaxLabel is the longest label accepted.
const MaxLabel = 63

var (
	// ErrInvalid is returned for anything that is not a valid hostname: empty
	// labels, spaces, control bytes, bad characters, over-long names or labels,
	// a bad port, a label starting or ending with '-'.
	ErrInvalid = errors.New("invalid hostname")
)

// idnaProfile converts internationalised names to their ASCII form. It maps
// case like a lookup would, but leaves the character checks to Valid, which
// allows '_' (SPEC §8: labels of letters, digits, '-', '_').
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.BidiRule(),
)

// Normalize returns the canonical form of a name: port removed, lower case, one
// trailing dot removed, internationalised labels in punycode. An IP literal
// (with or without brackets or port) is returned as ip with name "". Anything
// else that is not a valid hostname returns ErrInvalid.
//
// A name that is already canonical is returned as is, without allocating.
func Normalize(s string) (name string, ip netip.Addr, err error) {
	host, ok := stripPort(s)
	if !ok {
		return "", netip.Addr{}, ErrInvalid
	}
	if looksNumeric(host) {
		// An IP literal, or something that only looks like one ("1.2.3.256",
		// "010.1.1.1"): never matched as a name.
		a, perr := netip.ParseAddr(host)
		if perr != nil || a.Zone() != "" {
			return "", netip.Addr{}, ErrInvalid
		}
		return "", a.Unmap(), nil
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if canonical(host) {
		return host, netip.Addr{}, nil
	}
	ascii := true
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		host = strings.ToLower(host)
	} else {
		converted, cerr := idnaProfile.ToASCII(host)
		if cerr != nil {
			return "", netip.Addr{}, ErrInvalid
		}
		host = strings.ToLower(converted)
		if host == "" || looksNumeric(host) {
			// Unicode that maps to an IP literal ("１.２.３.４", soft hyphens
			// around digits): neither a name nor an address we accept.
			return "", netip.Addr{}, ErrInvalid
		}
	}
	if !Valid(host) {
		return "", netip.Addr{}, ErrInvalid
	}
	if strings.Contains(host, "xn--") {
		// Punycode labels must decode to something IDNA accepts.
		if _, cerr := idnaProfile.ToUnicode(host); cerr != nil {
			return "", netip.Addr{}, ErrInvalid
		}
	}
	return host, netip.Addr{}, nil
}

// looksNumeric reports whether s is an IP literal candidate: it has a colon
// (IPv6) or its last label is all digits (IPv4; no top-level domain is numeric).
func looksNumeric(s string) bool {
	if strings.IndexByte(s, ':') >= 0 {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	last := s[strings.LastIndexByte(s, '.')+1:]
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// canonical reports whether s is already a valid, lower-case, dot-less-at-the-
// end ASCII hostname with no punycode label (the fast path).
func canonical(s string) bool {
	if !Valid(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return !strings.Contains(s, "xn--")
}

// Valid reports whether s (without trailing dot) is a hostname by SPEC §8:
// labels of 1–63 bytes of ASCII letters, digits, '-' and '_', not starting or
// ending with '-', at most 253 bytes in all.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLength {
		return false
	}
	labelStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			n := i - labelStart
			if n == 0 || n > MaxLabel || s[labelStart] == '-' || s[i-1] == '-' {
				return false
			}
			labelStart = i + 1
			continue
		}
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// stripPort removes a trailing ":port" and the brackets of an IPv6 literal. A
// bare IPv6 literal (several colons, no brackets) is returned unchanged.
func stripPort(s string) (string, bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", false
		}
		rest := s[end+1:]
		if rest != "" && !validPort(strings.TrimPrefix(rest, ":")) || rest != "" && rest[0] != ':' {
			return "", false
		}
		return s[1:end], true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, true
	}
	if strings.IndexByte(s, ':') != i {
		return s, true // bare IPv6 literal, checked by the caller
	}
	if !validPort(s[i+1:]) {
		return "", false
	}
	return s[:i], true
}

func validPort(p string) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}
