package rules

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bigConfig writes a config with one category of n generated domains (from a
// list file) and 100 segments, each with its own rule before the shared policy.
func bigConfig(tb testing.TB, n int) string {
	tb.Helper()
	dir := tb.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "# generated")
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "d%07d-%x.example%d.com\n", i, i*2654435761%1000003, i%97)
	}
	w.Flush()
	f.Close()
	var b strings.Builder
	b.WriteString(`category "big" { files = ["big.txt"] }
category "social" { domains = ["tiktok.com", "facebook.com"] }
policy "baseline" {
  rule "watch" {
    action = "deny"
    monitor = false
    ports = [25]
  }
  rule "no-social" {
    action = "deny"
    categories = ["social"]
  }
  rule "no-big" {
    action = "deny"
    categories = ["big"]
  }
}
`)
	for s := 0; s < 100; s++ {
		fmt.Fprintf(&b, `segment "seg%d" {
  sources = ["10.%d.0.0/16", "fd00:%x::/48"]
  default = "allow"
  rule "own%d" {
    action = "allow"
    domains = ["intranet%d.example"]
  }
  policies = ["baseline"]
}
`, s, s, s, s, s)
	}
	p := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkDecide1M: a decision against a category of 1,000,000 domains plus
// 100 segments. Target (issue 2): ≤ 1 µs and 0 allocations, hit and miss.
func BenchmarkDecide1M(b *testing.B) {
	p := bigConfig(b, 1_000_000)
	cfg, diags := Load(p, Options{})
	if diags.HasErrors() {
		b.Fatal(DiagnosticsError(diags))
	}
	cases := []struct {
		name string
		req  Request
		want Action
	}{
		{"hit", Request{Source: netip.MustParseAddr("10.57.3.4"), Host: "cdn.d0512345-" + fmt.Sprintf("%x", 512345*2654435761%1000003) + ".example" + fmt.Sprint(512345%97) + ".com", Port: 443}, Deny},
		{"hit-deep", Request{Source: netip.MustParseAddr("10.57.3.4"), Host: "a.b.c.d.e.f.v16-webapp.tiktok.com", Port: 443}, Deny},
		{"miss", Request{Source: netip.MustParseAddr("10.99.3.4"), Host: "www.some-ordinary-site.example.org", Port: 443}, Allow},
		{"ipv6-miss", Request{Source: netip.MustParseAddr("fd00:42::1"), Host: "www.gov.uk", Port: 443}, Allow},
	}
	for _, c := range cases {
		if d := cfg.Policy.Decide(c.req); d.Action != c.want {
			b.Fatalf("%s: %+v", c.name, d)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cfg.Policy.Decide(c.req)
			}
		})
	}
}

// BenchmarkCompile1M: loading and compiling the 1M-domain config. Target:
// < 3 s and < 250 MB heap (reported as heap-MB: live heap after a GC, with the
// compiled config still referenced).
func BenchmarkCompile1M(b *testing.B) {
	p := bigConfig(b, 1_000_000)
	var cfg *Config
	for b.Loop() {
		c, d := Load(p, Options{})
		if d.HasErrors() {
			b.Fatal(DiagnosticsError(d))
		}
		cfg = c
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/1e6, "heap-MB")
	b.ReportMetric(float64(cfg.Policy.DomainCount()), "domains")
	runtime.KeepAlive(cfg)
}

func TestBigConfigCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	p := bigConfig(t, 100_000)
	cfg, diags := Load(p, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	if n := cfg.Policy.DomainCount(); n != 100_000+2+100 {
		t.Fatalf("domains = %d", n)
	}
	src := netip.MustParseAddr("10.3.0.1")
	if d := cfg.Policy.DecideName(src, "x.d0000042-"+fmt.Sprintf("%x", 42*2654435761%1000003)+".example42.com", 443); d.Action != Deny || d.RuleName() != "no-big" {
		t.Fatalf("%+v", d)
	}
	if d := cfg.Policy.DecideName(src, "intranet3.example", 443); d.Action != Allow || d.RuleName() != "own3" {
		t.Fatalf("%+v", d)
	}
}
