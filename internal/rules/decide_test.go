package rules

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const decideHCL = `
tls {
  sni_mismatch = "deny"
  missing_sni  = "allow"
  ech          = "allow"
}

category "social" {
  domains = ["tiktok.com", "*.facebook.com", "bücher.example"]
}
category "video" {
  domains = ["tiktok.com", "netflix.com"]
}

policy "baseline" {
  rule "monitor-video" {
    action     = "deny"
    monitor    = true
    categories = ["video"]
  }
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
  rule "no-ssh-out" {
    action = "deny"
    ports  = [22]
  }
  rule "no-bad-net" {
    action = "deny"
    cidrs  = ["203.0.113.0/24", "2001:db8:bad::/48"]
  }
}

policy "second" {
  rule "allow-netflix-443" {
    action  = "allow"
    domains = ["netflix.com"]
    ports   = [443]
  }
  rule "deny-netflix" {
    action  = "deny"
    domains = ["netflix.com"]
  }
}

segment "ministry" {
  sources  = ["10.20.0.0/16", "fd00:20::/48"]
  default  = "allow"
  policies = ["baseline", "second"]
}

segment "comms" {
  sources = ["10.20.5.0/24", "fd00:20:5::/64"]
  default = "allow"
  rule "tiktok-exception" {
    action  = "allow"
    domains = ["tiktok.com"]
    owner   = "comms@ministry.example"
    ticket  = "SEC-1"
    expires = "2027-03-31"
  }
  rule "watch-x" {
    action  = "deny"
    monitor = true
    domains = ["x.com"]
  }
  policies = ["baseline"]
}

segment "servers" {
  sources = ["10.30.0.0/16"]
  default = "deny"
  rule "updates" {
    action  = "allow"
    domains = ["deb.debian.org", "*.ubuntu.com"]
    ports   = [80, 443]
  }
}

segment "host" {
  sources = ["10.20.5.99/32"]
  default = "deny"
}
`

func loadString(t testing.TB, src string, now func() time.Time) *Config {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(p, Options{Now: now})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	return cfg
}

func TestDecide(t *testing.T) {
	cfg := loadString(t, decideHCL, clock)
	type want struct {
		action  Action
		reason  Reason
		segment string
		rule    string
		monitor string // comma-joined monitor rule names
	}
	tests := []struct {
		name string
		src  string
		host string
		port uint16
		want want
	}{
		{"default allow", "10.20.1.1", "example.com", 443, want{Allow, ReasonDefault, "ministry", "", ""}},
		{"category apex", "10.20.1.1", "tiktok.com", 443, want{Deny, ReasonRule, "ministry", "no-social", "monitor-video"}},
		{"category subdomain", "10.20.1.1", "v16-webapp.tiktok.com", 443, want{Deny, ReasonRule, "ministry", "no-social", "monitor-video"}},
		{"not a suffix match on label boundary", "10.20.1.1", "nottiktok.com", 443, want{Allow, ReasonDefault, "ministry", "", ""}},
		{"wildcard excludes apex", "10.20.1.1", "facebook.com", 443, want{Allow, ReasonDefault, "ministry", "", ""}},
		{"wildcard matches subdomain", "10.20.1.1", "www.facebook.com", 443, want{Deny, ReasonRule, "ministry", "no-social", ""}},
		{"mixed case and trailing dot", "10.20.1.1", "WWW.TikTok.COM.", 443, want{Deny, ReasonRule, "ministry", "no-social", "monitor-video"}},
		{"IDN in pattern and name", "10.20.1.1", "shop.BÜCHER.example", 443, want{Deny, ReasonRule, "ministry", "no-social", ""}},
		{"IDN punycode name", "10.20.1.1", "xn--bcher-kva.example", 443, want{Deny, ReasonRule, "ministry", "no-social", ""}},
		{"ports matcher alone", "10.20.1.1", "example.com", 22, want{Deny, ReasonRule, "ministry", "no-ssh-out", ""}},
		{"AND of domains and ports: both", "10.20.1.1", "www.netflix.com", 443, want{Allow, ReasonRule, "ministry", "allow-netflix-443", "monitor-video"}},
		{"AND of domains and ports: port differs", "10.20.1.1", "www.netflix.com", 8443, want{Deny, ReasonRule, "ministry", "deny-netflix", "monitor-video"}},
		{"cidrs match IP literal", "10.20.1.1", "203.0.113.7", 443, want{Deny, ReasonRule, "ministry", "no-bad-net", ""}},
		{"cidrs IPv6 literal", "10.20.1.1", "[2001:db8:bad::1]:443", 443, want{Deny, ReasonRule, "ministry", "no-bad-net", ""}},
		{"IP literal outside cidrs", "10.20.1.1", "198.51.100.1", 443, want{Allow, ReasonDefault, "ministry", "", ""}},
		{"longest prefix picks comms", "10.20.5.7", "www.tiktok.com", 443, want{Allow, ReasonRule, "comms", "tiktok-exception", ""}},
		{"segment rules before policies", "10.20.5.7", "www.facebook.com", 443, want{Deny, ReasonRule, "comms", "no-social", ""}},
		{"monitor rule records and continues", "10.20.5.7", "x.com", 443, want{Allow, ReasonDefault, "comms", "", "watch-x"}},
		{"most specific /32", "10.20.5.99", "example.com", 443, want{Deny, ReasonDefault, "host", "", ""}},
		{"IPv6 source", "fd00:20::1", "www.tiktok.com", 443, want{Deny, ReasonRule, "ministry", "no-social", "monitor-video"}},
		{"IPv6 longest prefix", "fd00:20:5::9", "www.tiktok.com", 443, want{Allow, ReasonRule, "comms", "tiktok-exception", ""}},
		{"IPv4-mapped IPv6 source", "::ffff:10.20.5.7", "www.tiktok.com", 443, want{Allow, ReasonRule, "comms", "tiktok-exception", ""}},
		{"unknown source", "192.0.2.1", "example.com", 443, want{Deny, ReasonUnknownSource, "", "", ""}},
		{"unknown IPv6 source", "2001:db8::1", "example.com", 443, want{Deny, ReasonUnknownSource, "", "", ""}},
		{"invalid host", "10.20.1.1", "bad..name", 443, want{Deny, ReasonInvalidHost, "ministry", "", ""}},
		{"invalid host control byte", "10.20.1.1", "a\x00b.com", 443, want{Deny, ReasonInvalidHost, "ministry", "", ""}},
		{"default deny segment", "10.30.0.5", "example.com", 443, want{Deny, ReasonDefault, "servers", "", ""}},
		{"allow list with ports", "10.30.0.5", "deb.debian.org", 80, want{Allow, ReasonRule, "servers", "updates", ""}},
		{"allow list wildcard", "10.30.0.5", "security.ubuntu.com", 443, want{Allow, ReasonRule, "servers", "updates", ""}},
		{"allow list wildcard not apex", "10.30.0.5", "ubuntu.com", 443, want{Deny, ReasonDefault, "servers", "", ""}},
		{"allow list wrong port", "10.30.0.5", "deb.debian.org", 8080, want{Deny, ReasonDefault, "servers", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := cfg.Policy.DecideName(netip.MustParseAddr(tt.src).Unmap(), tt.host, tt.port)
			var mon []string
			for _, m := range d.Monitor {
				mon = append(mon, m.Name)
			}
			got := want{d.Action, d.Reason, d.SegmentName(), d.RuleName(), strings.Join(mon, ",")}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExpiredRuleStopsMatching(t *testing.T) {
	now := time.Date(2027, 3, 30, 23, 59, 59, 0, time.UTC)
	cfg := loadString(t, decideHCL, func() time.Time { return now })
	src := netip.MustParseAddr("10.20.5.7")
	if d := cfg.Policy.DecideName(src, "www.tiktok.com", 443); d.Action != Allow || d.RuleName() != "tiktok-exception" {
		t.Fatalf("the day before expiry: %+v", d)
	}
	now = time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC)
	d := cfg.Policy.DecideName(src, "www.tiktok.com", 443)
	if d.Action != Deny || d.RuleName() != "no-social" {
		t.Fatalf("on the expiry date: %+v (want fail closed to no-social)", d)
	}
	_, trace := cfg.Policy.Explain(Request{Source: src, Host: "www.tiktok.com", Port: 443})
	if trace[0].Rule != "tiktok-exception" || !strings.Contains(trace[0].Outcome, "expired") {
		t.Fatalf("trace %+v", trace)
	}
}

func TestDecideAll(t *testing.T) {
	cfg := loadString(t, decideHCL, clock)
	src := netip.MustParseAddr("10.20.1.1")
	tests := []struct {
		name    string
		n       Names
		action  Action
		reason  Reason
		rule    string
		tlsEdit func(*TLSSettings)
	}{
		{name: "same names allowed", n: Names{Target: "example.com:443", Inner: "example.com", HasInner: true, TLS: true}, action: Allow, reason: ReasonDefault},
		{name: "same name, case differs", n: Names{Target: "Example.COM", Inner: "example.com.", HasInner: true, TLS: true}, action: Allow, reason: ReasonDefault},
		{name: "target denied", n: Names{Target: "www.tiktok.com", Inner: "www.tiktok.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonRule, rule: "no-social"},
		{name: "fronting denied by mismatch", n: Names{Target: "example.com", Inner: "www.tiktok.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonSNIMismatch},
		{name: "mismatch allowed still decides SNI", n: Names{Target: "example.com", Inner: "www.tiktok.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonRule, rule: "no-social",
			tlsEdit: func(s *TLSSettings) { s.SNIMismatch = Allow }},
		{name: "mismatch allowed, both fine", n: Names{Target: "example.com", Inner: "example.org", HasInner: true, TLS: true}, action: Allow, reason: ReasonDefault,
			tlsEdit: func(s *TLSSettings) { s.SNIMismatch = Allow }},
		{name: "IP literal with denied SNI", n: Names{Target: "198.51.100.1:443", Inner: "www.tiktok.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonRule, rule: "no-social"},
		{name: "IP literal with allowed SNI", n: Names{Target: "198.51.100.1:443", Inner: "example.com", HasInner: true, TLS: true}, action: Allow, reason: ReasonDefault},
		{name: "IP literal in bad cidr with SNI", n: Names{Target: "203.0.113.9", Inner: "example.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonRule, rule: "no-bad-net"},
		{name: "IP literal no SNI", n: Names{Target: "198.51.100.1", TLS: true}, action: Allow, reason: ReasonDefault},
		{name: "missing SNI allowed", n: Names{Target: "example.com", TLS: true}, action: Allow, reason: ReasonDefault},
		{name: "missing SNI denied", n: Names{Target: "example.com", TLS: true}, action: Deny, reason: ReasonMissingSNI,
			tlsEdit: func(s *TLSSettings) { s.MissingSNI = Deny }},
		{name: "transparent missing SNI always denied", n: Names{TLS: true}, action: Deny, reason: ReasonMissingSNI},
		{name: "transparent SNI decided", n: Names{Inner: "m.tiktok.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonRule, rule: "no-social"},
		{name: "ECH allowed", n: Names{Target: "example.com", Inner: "example.com", HasInner: true, TLS: true, ECH: true}, action: Allow, reason: ReasonDefault},
		{name: "ECH denied", n: Names{Target: "example.com", Inner: "example.com", HasInner: true, TLS: true, ECH: true}, action: Deny, reason: ReasonECH,
			tlsEdit: func(s *TLSSettings) { s.ECH = Deny }},
		{name: "invalid SNI", n: Names{Target: "example.com", Inner: "exa mple.com", HasInner: true, TLS: true}, action: Deny, reason: ReasonInvalidHost},
		{name: "Host header mismatch", n: Names{Target: "example.com", Inner: "www.tiktok.com", HasInner: true}, action: Deny, reason: ReasonSNIMismatch},
		{name: "Host header with port agrees", n: Names{Target: "example.com", Inner: "example.com:80", HasInner: true}, action: Allow, reason: ReasonDefault},
		{name: "transparent HTTP without Host", n: Names{}, action: Deny, reason: ReasonInvalidHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *cfg
			if tt.tlsEdit != nil {
				tt.tlsEdit(&c.TLS)
			}
			n := tt.n
			n.Source, n.Port = src, 443
			d := c.DecideAll(n)
			if d.Action != tt.action || d.Reason != tt.reason || d.RuleName() != tt.rule || d.SegmentName() != "ministry" {
				t.Errorf("got %s/%s rule %q segment %q; want %s/%s rule %q", d.Action, d.Reason, d.RuleName(), d.SegmentName(), tt.action, tt.reason, tt.rule)
			}
		})
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	cfg := loadString(t, decideHCL, clock)
	reqs := []Request{
		{Source: netip.MustParseAddr("10.20.1.1"), Host: "www.facebook.com", Port: 443},
		{Source: netip.MustParseAddr("10.20.1.1"), Host: "example.com", Port: 443},
		{Source: netip.MustParseAddr("10.20.5.7"), Host: "www.tiktok.com", Port: 443},
		{Source: netip.MustParseAddr("192.0.2.1"), Host: "example.com", Port: 443},
	}
	for _, r := range reqs {
		if a := testing.AllocsPerRun(100, func() { cfg.Policy.Decide(r) }); a != 0 {
			t.Errorf("Decide(%+v) allocates %v", r, a)
		}
	}
}

func TestRunTests(t *testing.T) {
	cfg := loadString(t, decideHCL+`
test "passes" {
  source = "10.20.5.7"
  host   = "www.tiktok.com"
  expect = "allow"
  rule   = "tiktok-exception"
}
test "wrong expectation" {
  source = "10.20.1.1"
  host   = "www.tiktok.com"
  expect = "allow"
}
test "wrong rule" {
  source = "10.20.1.1"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-ssh-out"
}
test "fronting" {
  source = "10.20.1.1"
  host   = "example.com"
  sni    = "www.tiktok.com"
  expect = "deny"
  reason = "sni_mismatch"
}
`, clock)
	res := cfg.RunTests()
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	if !res[0].Pass || res[1].Pass || res[2].Pass || !res[3].Pass {
		t.Fatalf("results %+v", res)
	}
	if !strings.Contains(res[1].Why, "expected allow, got deny") || !strings.Contains(res[2].Why, `expected rule "no-ssh-out", decided by no-social`) {
		t.Fatalf("why: %q / %q", res[1].Why, res[2].Why)
	}
}

func TestConcurrentDecide(t *testing.T) {
	cfg := loadString(t, decideHCL, clock)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 2000; i++ {
				d := cfg.Policy.DecideName(netip.MustParseAddr("10.20.5.7"), "www.tiktok.com", 443)
				if d.Action != Allow {
					t.Error("wrong decision")
					return
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}
