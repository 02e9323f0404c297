package hostname

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in   string
		name string
		ip   string
		err  bool
	}{
		{in: "www.tiktok.com", name: "www.tiktok.com"},
		{in: "WWW.TikTok.COM", name: "www.tiktok.com"},
		{in: "www.tiktok.com.", name: "www.tiktok.com"},
		{in: "www.tiktok.com.:443", name: "www.tiktok.com"},
		{in: "www.tiktok.com:8080", name: "www.tiktok.com"},
		{in: "_dmarc.example.com", name: "_dmarc.example.com"},
		{in: "bücher.example", name: "xn--bcher-kva.example"},
		{in: "BÜCHER.example.", name: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", name: "xn--bcher-kva.example"},
		{in: "例え.テスト", name: "xn--r8jz45g.xn--zckzah"},
		{in: "1.2.3.4", ip: "1.2.3.4"},
		{in: "1.2.3.4:443", ip: "1.2.3.4"},
		{in: "[2001:db8::1]:443", ip: "2001:db8::1"},
		{in: "[2001:db8::1]", ip: "2001:db8::1"},
		{in: "2001:db8::1", ip: "2001:db8::1"},
		{in: "[::ffff:10.0.0.1]:80", ip: "10.0.0.1"},
		{in: "", err: true},
		{in: ".", err: true},
		{in: "a..b", err: true},
		{in: ".a.b", err: true},
		{in: "a.b..", err: true},
		{in: "has space.com", err: true},
		{in: "ctl\x01.com", err: true},
		{in: "-lead.com", err: true},
		{in: "trail-.com", err: true},
		{in: "a.com:", err: true},
		{in: "a.com:99999", err: true},
		{in: "a.com:http", err: true},
		{in: "[::1", err: true},
		{in: "[::1]x", err: true},
		{in: "fe80::1%eth0", err: true},
		{in: strings.Repeat("a", 64) + ".com", err: true},
		{in: strings.Repeat("a.", 127) + "com", err: true},
		{in: "xn--invalid-.com", err: true},
		{in: "a/b.com", err: true},
		{in: "1.2.3.256", err: true},
		{in: "010.1.1.1", err: true},
		{in: "host.123", err: true},
		{in: "123.example", name: "123.example"},
		{in: "\u00ad0", err: true},
		{in: "１.２.３.４", err: true},
		{in: "a*b.com", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			name, ip, err := Normalize(tt.in)
			if tt.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Normalize(%q) = %q, %v, %v; want ErrInvalid", tt.in, name, ip, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tt.in, err)
			}
			if name != tt.name {
				t.Errorf("name = %q, want %q", name, tt.name)
			}
			var want netip.Addr
			if tt.ip != "" {
				want = netip.MustParseAddr(tt.ip)
			}
			if ip != want {
				t.Errorf("ip = %v, want %v", ip, want)
			}
		})
	}
}

func TestNormalizeCanonicalDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := Normalize("v16-webapp.tiktok.com"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v, want 0", allocs)
	}
}

func TestMaxLength(t *testing.T) {
	name := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	if len(name) != 253 {
		t.Fatalf("len = %d", len(name))
	}
	if _, _, err := Normalize(name); err != nil {
		t.Fatalf("253-byte name rejected: %v", err)
	}
	if _, _, err := Normalize(name + "."); err != nil {
		t.Fatalf("253-byte name with trailing dot rejected: %v", err)
	}
	if _, _, err := Normalize(name + "d"); err == nil {
		t.Fatal("254-byte name accepted")
	}
}

// FuzzNormalize checks that Normalize never panics, that its output is a
// fixed point, and that every accepted name is valid.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"www.tiktok.com", "WWW.TIKTOK.COM.", "bücher.example:443", "[::1]:80", "1.2.3.4", "a..b", "xn--bcher-kva.example", "\x00", "例え.テスト"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ip, err := Normalize(s)
		if err != nil {
			return
		}
		if ip.IsValid() {
			if name != "" {
				t.Fatalf("both name %q and ip %v", name, ip)
			}
			return
		}
		if !Valid(name) {
			t.Fatalf("Normalize(%q) = %q, not valid", s, name)
		}
		again, ip2, err := Normalize(name)
		if err != nil || again != name || ip2.IsValid() {
			t.Fatalf("not a fixed point: %q -> %q -> %q, %v, %v", s, name, again, ip2, err)
		}
	})
}
