package conntrack

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
)

func testEngine(t *testing.T, limits string) *Tracker {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.hcl")
	os.WriteFile(p, []byte(limits+`
segment "s" {
  sources = ["127.0.0.0/8"]
  default = "allow"
}`), 0o644)
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return New(func() *rules.Config { return cfg }, metrics.New(metrics.NewRegistry()), nil)
}

func TestAdmitLimits(t *testing.T) {
	e := testEngine(t, `limits {
  max_connections = 3
  per_source      = 2
}`)
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	r1, _ := e.Admit("proxy", a)
	r2, _ := e.Admit("proxy", a)
	if r1 == nil || r2 == nil {
		t.Fatal("refused under the limits")
	}
	if r, why := e.Admit("proxy", a); r != nil || why != metrics.RejectPerSource {
		t.Fatalf("third from one source: %v", why)
	}
	r3, _ := e.Admit("transparent_https", b)
	if r3 == nil {
		t.Fatal("other source refused")
	}
	if r, why := e.Admit("proxy", netip.MustParseAddr("127.0.0.4")); r != nil || why != metrics.RejectMaxConnections {
		t.Fatalf("over max_connections: %v", why)
	}
	r1()
	r1() // idempotent
	if e.Connections() != 2 {
		t.Fatalf("connections = %d", e.Connections())
	}
	if r, _ := e.Admit("proxy", netip.MustParseAddr("::ffff:127.0.0.2")); r == nil {
		t.Fatal("not admitted after a release (IPv4-mapped address is the same source)")
	}
}
