package rules

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ppSegment = `
segment "s" {
  sources = ["10.20.0.0/16"]
  default = "allow"
}
`

// loadSettings loads one config file with src and returns the config and every
// diagnostic as text.
func loadSettings(t *testing.T, src string) (*Config, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(p, Options{Now: clock})
	var b strings.Builder
	WriteDiagnostics(&b, diags)
	return cfg, b.String()
}

func TestProxyProtocolFrom(t *testing.T) {
	cfg, out := loadSettings(t, `
proxy {
  proxy_protocol      = true
  proxy_protocol_from = ["10.0.0.0/24", "10.0.1.7", "::ffff:10.0.2.0/120", "2001:db8::/64"]
}
transparent {
  proxy_protocol      = true
  proxy_protocol_from = ["192.0.2.10"]
}
`+ppSegment)
	if cfg == nil || out != "" {
		t.Fatalf("diagnostics:\n%s", out)
	}
	want := []string{"10.0.0.0/24", "10.0.1.7/32", "10.0.2.0/24", "2001:db8::/64"}
	var got []string
	for _, p := range cfg.ProxyProtocolFrom.Proxy {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("proxy peers %v, want %v", got, want)
	}
	if len(cfg.ProxyProtocolFrom.Transparent) != 1 || cfg.ProxyProtocolFrom.Transparent[0].String() != "192.0.2.10/32" {
		t.Fatalf("transparent peers %v", cfg.ProxyProtocolFrom.Transparent)
	}
	for _, tt := range []struct {
		peer string
		want bool
	}{
		{"10.0.0.1", true},
		{"::ffff:10.0.0.1", true}, // a dual-stack socket's view of an IPv4 peer
		{"10.0.1.7", true},
		{"10.0.1.8", false},
		{"10.0.2.255", true},
		{"2001:db8::5", true},
		{"2001:db8:1::5", false},
		{"10.20.5.7", false},
	} {
		if got := Trusts(cfg.ProxyProtocolFrom.Proxy, netip.MustParseAddr(tt.peer)); got != tt.want {
			t.Errorf("Trusts(%s) = %v, want %v", tt.peer, got, tt.want)
		}
	}
	if Trusts(nil, netip.MustParseAddr("10.0.0.1")) || Trusts(cfg.ProxyProtocolFrom.Proxy, netip.Addr{}) {
		t.Error("an empty list or an invalid peer is trusted")
	}
}

// Warnings, not errors: the list without proxy_protocol (kept, for a reload
// that turns proxy_protocol off before the restart that applies it), and a
// list that trusts everybody.
func TestProxyProtocolFromWarnings(t *testing.T) {
	cfg, out := loadSettings(t, `
proxy {
  proxy_protocol_from = ["10.0.0.0/24"]
}
transparent {
  proxy_protocol      = true
  proxy_protocol_from = ["0.0.0.0/0"]
}
`+ppSegment)
	if cfg == nil {
		t.Fatalf("not loaded:\n%s", out)
	}
	for _, w := range []string{
		`c.hcl:3:25: warning: proxy_protocol_from without proxy_protocol; proxy.proxy_protocol_from has no effect`,
		`c.hcl:7:26: warning: proxy_protocol_from trusts every peer; "0.0.0.0/0" lets any client`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	if len(cfg.ProxyProtocolFrom.Proxy) != 1 || len(cfg.Warnings) != 2 {
		t.Errorf("peers %v, warnings %d", cfg.ProxyProtocolFrom.Proxy, len(cfg.Warnings))
	}
}

// The lists are not part of the listener settings: a reload that only
// changes them is not reported as needing a restart.
func TestProxyProtocolFromNotStatic(t *testing.T) {
	src := func(from string) string {
		return `proxy {
  proxy_protocol      = true
  proxy_protocol_from = ["` + from + `"]
}` + ppSegment
	}
	a, out := loadSettings(t, src("10.0.0.1"))
	if a == nil {
		t.Fatal(out)
	}
	b, out := loadSettings(t, src("10.0.0.2"))
	if b == nil {
		t.Fatal(out)
	}
	if a.Proxy != b.Proxy || a.Transparent != b.Transparent {
		t.Error("proxy_protocol_from changed the listener settings")
	}
}

func TestDNSSettings(t *testing.T) {
	cfg, out := loadSettings(t, ppSegment)
	if cfg == nil || out != "" || cfg.Upstream.DNSCacheSize != DefaultDNSCacheSize || cfg.Upstream.DNSMaxTTL != DefaultDNSMaxTTL || cfg.Upstream.DNSServers != nil ||
		cfg.Upstream.DNSServeStale != DefaultDNSServeStale {
		t.Fatalf("defaults: %+v %s", cfg.Upstream, out)
	}
	cfg, out = loadSettings(t, `
upstream {
  dns_servers    = ["10.0.0.53", "10.0.0.54:5353", "[2001:db8::53]:53", "2001:db8::54"]
  dns_cache_size = 0
  dns_max_ttl    = "1m"
  dns_serve_stale = "0s"
}
`+ppSegment)
	if cfg == nil || out != "" {
		t.Fatalf("diagnostics:\n%s", out)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53"), netip.MustParseAddrPort("10.0.0.54:5353"),
		netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("[2001:db8::54]:53")}
	if len(cfg.Upstream.DNSServers) != len(want) || cfg.Upstream.DNSCacheSize != 0 || cfg.Upstream.DNSMaxTTL.String() != "1m0s" || cfg.Upstream.DNSServeStale != 0 {
		t.Fatalf("%+v", cfg.Upstream)
	}
	for i := range want {
		if cfg.Upstream.DNSServers[i] != want[i] {
			t.Fatalf("server %d: %v, want %v", i, cfg.Upstream.DNSServers[i], want[i])
		}
	}
	for _, bad := range []string{
		`dns_servers = ["dns.example"]`,
		`dns_servers = ["10.0.0.53:0"]`,
		`dns_servers = ["fe80::1%eth0"]`,
		`dns_cache_size = -1`,
		`dns_cache_size = 99999999`,
		`dns_max_ttl = "0s"`,
		`dns_serve_stale = "-1s"`,
		`dns_serve_stale = "169h"`,
		`dns_serve_stale = "a day"`,
	} {
		if _, out := loadSettings(t, "upstream {\n  "+bad+"\n}\n"+ppSegment); !strings.Contains(out, "error: Invalid") {
			t.Errorf("%s: no error:\n%s", bad, out)
		}
	}
}
