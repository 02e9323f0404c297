package active

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/rules"
)

func load(t *testing.T, hosts string) *rules.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.hcl")
	os.WriteFile(p, []byte(`
upstream {
  dial_timeout  = "3s"
  hosts         = { `+hosts+` }
  allow_private = ["127.0.0.1/32"]
}
segment "s" {
  sources = ["127.0.0.0/8"]
  default = "allow"
}`), 0o644)
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return cfg
}

// The dialer of a State is built from its own config, and a publish swaps
// config and dialer together.
func TestStorePublish(t *testing.T) {
	a, b := load(t, `"x.test" = "127.0.0.1"`), load(t, `"x.test" = "127.0.0.2"`)
	s := NewStore(a)
	st := s.Load()
	if st.Config != a || s.Config() != a || st.Dialer.Timeout != 3*time.Second ||
		st.Dialer.Hosts["x.test"] != netip.MustParseAddr("127.0.0.1") || len(st.Dialer.AllowPrivate) != 1 {
		t.Fatalf("state %+v", st.Dialer)
	}
	// Readers racing a publish see one whole State or the other.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				st := s.Load()
				want := netip.MustParseAddr("127.0.0.1")
				if st.Config == b {
					want = netip.MustParseAddr("127.0.0.2")
				}
				if st.Dialer.Hosts["x.test"] != want {
					t.Error("config and dialer of different versions")
					return
				}
			}
		}()
	}
	if got := s.Publish(b); got != s.Load() || got.Config != b {
		t.Fatal("Publish did not return the State in force")
	}
	wg.Wait()
}

// The DNS cache outlives a reload that keeps its settings (its answers
// stay), is new when they change, and is off with dns_cache_size = 0.
func TestDNSCacheAcrossReloads(t *testing.T) {
	withDNS := func(extra string) *rules.Config {
		p := filepath.Join(t.TempDir(), "c.hcl")
		os.WriteFile(p, []byte("upstream {\n"+extra+"\n}\nsegment \"s\" {\n  sources = [\"127.0.0.0/8\"]\n  default = \"allow\"\n}\n"), 0o644)
		cfg, diags := rules.Load(p, rules.Options{})
		if diags.HasErrors() {
			t.Fatal(rules.DiagnosticsError(diags))
		}
		return cfg
	}
	s := NewStore(withDNS(`dns_max_ttl = "1m"`))
	first := s.DNS()
	if first == nil || s.Load().Dialer.Resolver != first {
		t.Fatalf("no cache by default: %v", s.Load().Dialer.Resolver)
	}
	s.Publish(withDNS(`dns_max_ttl = "1m"
  hosts = { "x.test" = "192.0.2.1" }`))
	if s.DNS() != first || s.Load().Dialer.Resolver != first {
		t.Fatal("a reload that keeps the DNS settings replaced the cache")
	}
	s.Publish(withDNS(`dns_max_ttl = "2m"`))
	if s.DNS() == first || s.DNS() == nil {
		t.Fatal("a changed dns_max_ttl kept the old cache")
	}
	s.Publish(withDNS(`dns_cache_size = 0`))
	if s.DNS() != nil || s.Load().Dialer.Resolver != nil {
		t.Fatal("dns_cache_size = 0 still caches")
	}
}
