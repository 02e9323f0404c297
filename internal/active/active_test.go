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
