package admin

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPACFile(t *testing.T) {
	tests := []struct {
		name        string
		cfg         PACConfig
		requestHost string
		wantProxy   string
		wantErr     error
	}{
		{name: "explicit", cfg: PACConfig{ProxyAddr: "proxy.example:3128"}, requestHost: "ignored.example:9090", wantProxy: `"PROXY proxy.example:3128"`},
		{name: "explicit ipv6", cfg: PACConfig{ProxyAddr: "[fd00::1]:3128"}, wantProxy: `"PROXY [fd00::1]:3128"`},
		{name: "derived", cfg: PACConfig{ProxyPort: 3128}, requestHost: "egress.corp.example:9090", wantProxy: `"PROXY egress.corp.example:3128"`},
		{name: "derived no port", cfg: PACConfig{ProxyPort: 8080}, requestHost: "egress.corp.example", wantProxy: `"PROXY egress.corp.example:8080"`},
		{name: "derived ipv6", cfg: PACConfig{ProxyPort: 3128}, requestHost: "[::1]:9090", wantProxy: `"PROXY [::1]:3128"`},
		{name: "derived ipv6 no port", cfg: PACConfig{ProxyPort: 3128}, requestHost: "[::1]", wantProxy: `"PROXY [::1]:3128"`},
		{name: "hostile host directive", cfg: PACConfig{ProxyPort: 3128}, requestHost: "a.example;DIRECT", wantErr: ErrNoProxyAddress},
		{name: "hostile host quote", cfg: PACConfig{ProxyPort: 3128}, requestHost: `a"b`, wantErr: ErrNoProxyAddress},
		{name: "empty host", cfg: PACConfig{ProxyPort: 3128}, requestHost: "", wantErr: ErrNoProxyAddress},
		{name: "zone", cfg: PACConfig{ProxyPort: 3128}, requestHost: "[fe80::1%eth0]:9090", wantErr: ErrNoProxyAddress},
		{name: "no port", cfg: PACConfig{}, requestHost: "egress.example", wantErr: ErrBadProxyAddr},
		{name: "bad explicit", cfg: PACConfig{ProxyAddr: "proxy.example"}, wantErr: ErrBadProxyAddr},
		{name: "bad explicit host", cfg: PACConfig{ProxyAddr: "a b:3128"}, wantErr: ErrBadProxyAddr},
		{name: "bad cidr", cfg: PACConfig{ProxyAddr: "p.example:1", DirectCIDRs: []string{"10.0.0.0/33"}}, wantErr: ErrBadCIDR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PACFile(tt.cfg, tt.requestHost)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "var egressProxy = " + tt.wantProxy + ";\n"; !strings.Contains(got, want) {
				t.Errorf("PAC lacks %q:\n%s", want, got)
			}
			if !strings.Contains(got, "function FindProxyForURL(url, host)") {
				t.Error("PAC lacks FindProxyForURL")
			}
			if strings.Contains(got, "; DIRECT") {
				t.Error("PAC has a DIRECT fallback after PROXY")
			}
		})
	}
}

// pacData returns the JSON values of the PAC's three data lines.
func pacData(t testing.TB, pac string) (proxy string, suffixes []string, nets [][2]string) {
	t.Helper()
	lines := strings.Split(pac, "\n")
	var vars []string
	for _, l := range lines {
		if strings.HasPrefix(l, "var ") {
			vars = append(vars, l)
		}
	}
	if len(vars) != 3 {
		t.Fatalf("PAC has %d var lines, want 3:\n%s", len(vars), pac)
	}
	decode := func(line, name string, v any) {
		prefix := "var " + name + " = "
		if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, ";") {
			t.Fatalf("bad data line %q", line)
		}
		if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(line, prefix), ";")), v); err != nil {
			t.Fatalf("data line %q: %v", line, err)
		}
	}
	decode(vars[0], "egressProxy", &proxy)
	decode(vars[1], "egressDirectSuffixes", &suffixes)
	decode(vars[2], "egressDirectNets", &nets)
	return proxy, suffixes, nets
}

func TestPACEscaping(t *testing.T) {
	hostile := []string{`a"b`, `x\`, "c\nd", "e\u2028f", `</script><script>`, `"; return "DIRECT"; //`, "*.Corp.Example."}
	pac, err := PACFile(PACConfig{ProxyAddr: "p.example:3128", DirectSuffixes: hostile, DirectCIDRs: []string{"10.0.0.0/8", "192.168.1.77/24", "fd00::/8"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	proxy, suffixes, nets := pacData(t, pac)
	if proxy != "PROXY p.example:3128" {
		t.Errorf("proxy = %q", proxy)
	}
	want := []string{`a"b`, `x\`, "c\nd", "e\u2028f", `</script><script>`, `"; return "direct"; //`, "corp.example"}
	if strings.Join(suffixes, "|") != strings.Join(want, "|") {
		t.Errorf("suffixes = %q, want %q", suffixes, want)
	}
	if len(nets) != 2 || nets[0] != [2]string{"10.0.0.0", "255.0.0.0"} || nets[1] != [2]string{"192.168.1.0", "255.255.255.0"} {
		t.Errorf("nets = %q (IPv6 must be left out, prefixes masked)", nets)
	}
	for _, bad := range []string{"\u2028", "</script", `a"b"`} {
		if strings.Contains(pac, bad) {
			t.Errorf("PAC contains unescaped %q", bad)
		}
	}
}

// TestPACInNode evaluates the PAC file in a real JavaScript engine with the
// standard PAC helper functions, when node is installed.
func TestPACInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; PAC evaluated by structure only")
	}
	pac, err := PACFile(PACConfig{
		ProxyPort:      3128,
		DirectSuffixes: []string{"corp.example", `a"b`, `"; return "DIRECT"; //`},
		DirectCIDRs:    []string{"10.0.0.0/8", "fd00::/8"},
	}, "egress.corp.example:9090")
	if err != nil {
		t.Fatal(err)
	}
	// Helper functions as browsers define them (Mozilla's PAC utilities).
	harness := `
function isPlainHostName(h) { return h.indexOf(".") < 0; }
function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) === d; }
function ip2n(a) { var p = a.split("."); return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0; }
function isInNet(h, pat, mask) {
  if (!/^[0-9.]+$/.test(h)) { throw new Error("isInNet called on a name: " + h); }
  return ((ip2n(h) & ip2n(mask)) >>> 0) === ((ip2n(pat) & ip2n(mask)) >>> 0);
}
` + pac + `
var cases = JSON.parse(process.argv[2]);
var out = {};
for (var k in cases) { out[k] = FindProxyForURL("https://" + k + "/", k); }
out["__suffixes"] = egressDirectSuffixes;
console.log(JSON.stringify(out));
`
	dir := t.TempDir()
	file := filepath.Join(dir, "pac.js")
	if err := os.WriteFile(file, []byte(harness), 0o600); err != nil {
		t.Fatal(err)
	}
	const proxy, direct = "PROXY egress.corp.example:3128", "DIRECT"
	cases := map[string]string{
		"intranet":           direct,
		"corp.example":       direct,
		"wiki.corp.example":  direct,
		"WIKI.Corp.Example.": direct,
		"evilcorp.example":   proxy,
		"www.tiktok.com":     proxy,
		"10.1.2.3":           direct,
		"11.1.2.3":           proxy,
		"2001:db8::1":        proxy,
		"fd00::1":            proxy,
		"a\"b":               direct,
		"x.a\"b":             direct,
		"DIRECT":             direct, // a plain name
		"direct.example":     proxy,
	}
	arg, _ := json.Marshal(cases)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, file, string(arg)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	for host, want := range cases {
		if got[host] != want {
			t.Errorf("FindProxyForURL(%q) = %v, want %q", host, got[host], want)
		}
	}
	sfx, _ := json.Marshal(got["__suffixes"])
	if string(sfx) != `["corp.example","a\"b","\"; return \"direct\"; //"]` {
		t.Errorf("suffixes in JS = %s", sfx)
	}
}

func FuzzPACFile(f *testing.F) {
	f.Add("corp.example", "egress.example:9090", "10.0.0.0/8")
	f.Add(`a"b`, "[::1]:9090", "fd00::/8")
	f.Add("\u2028</script>", "x;DIRECT", "bad")
	f.Fuzz(func(t *testing.T, suffix, host, cidr string) {
		pac, err := PACFile(PACConfig{ProxyPort: 3128, DirectSuffixes: []string{suffix}, DirectCIDRs: []string{cidr}}, host)
		if err != nil {
			return
		}
		proxy, suffixes, _ := pacData(t, pac)
		// The PROXY directive is one directive: no separator, no space
		// after "PROXY ", nothing that could add DIRECT.
		rest, ok := strings.CutPrefix(proxy, "PROXY ")
		if !ok || strings.ContainsAny(rest, "; \t\r\n\"\\") {
			t.Fatalf("PROXY line %q from Host %q", proxy, host)
		}
		if len(suffixes) > 1 {
			t.Fatalf("one suffix became %d", len(suffixes))
		}
		if strings.ContainsAny(pac[:strings.Index(pac, "function FindProxyForURL")], "\u2028\u2029") {
			t.Fatal("raw line separator in the data lines")
		}
	})
}

// pac_proxy = "https://host:port" makes the PAC send browsers to the TLS
// proxy listener with an HTTPS directive.
func TestPACHTTPSDirective(t *testing.T) {
	got, err := PACFile(PACConfig{ProxyAddr: "https://proxy.example.org:3129"}, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, `"HTTPS proxy.example.org:3129"`) || strings.Contains(got, "PROXY ") {
		t.Errorf("PAC file:\n%s", got)
	}
	if _, err := PACFile(PACConfig{ProxyAddr: "https://bad host:1"}, "x"); err == nil {
		t.Error("a bad https:// address was accepted")
	}
}
