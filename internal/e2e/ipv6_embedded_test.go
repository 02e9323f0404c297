package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// IPv6 forms of private IPv4 addresses ("hostile clients" issue, defect 5):
// CONNECT to a NAT64, IPv4-compatible, IPv4-translated, 6to4 or Teredo form of
// a loopback, link-local or private address is refused with 403
// destination_ip_prohibited, like the IPv4 address itself, and a name that
// upstream.hosts maps to such a form is refused and never dialed.
//
// These addresses are not loopback: a proxy with the defect would dial them.
// So the test runs in a network namespace of its own that has nothing but a
// loopback interface (the outer test re-runs this binary under unshare), where
// such a dial cannot leave the machine — it fails at once, network unreachable
// — and the test checks the namespace before it starts egress.

const v6Env = "EGRESS_E2E_V6_NETNS" // set for the inner run

const v6Config = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
upstream {
  dial_timeout = "2s"
  hosts = {
    "nat64.test"    = "64:ff9b::7f00:1"
    "metadata.test" = "64:ff9b::a9fe:a9fe"
    "sixtofour.test" = "2002:a00:1::1"
  }
}
segment "office" {
  sources = ["127.0.0.0/8"]
  default = "allow"
}
`

func TestIPv6EmbeddedRefused(t *testing.T) {
	if os.Getenv(v6Env) != "" {
		t.Skip("inner run")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("SKIP: unshare (util-linux) not installed")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIP: ip (iproute2) not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"--net"}
	if os.Geteuid() != 0 {
		args = []string{"--user", "--map-root-user", "--net"}
	}
	if out, err := exec.CommandContext(ctx, "unshare", append(args, "true")...).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot create a network namespace here: %v: %s", err, out)
	}
	args = append(args, "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`,
		os.Args[0], "-test.run", "^TestIPv6EmbeddedRefusedInner$", "-test.count", "1", "-test.v")
	inner := exec.CommandContext(ctx, "unshare", args...)
	inner.Env = append(os.Environ(), v6Env+"=1")
	var out bytes.Buffer
	inner.Stdout, inner.Stderr = &out, &out
	err := inner.Run()
	t.Logf("inner run in a loopback-only network namespace:\n%s", out.String())
	if err != nil {
		t.Fatalf("inner run: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: TestIPv6EmbeddedRefusedInner") {
		t.Fatal("inner test did not pass")
	}
}

func TestIPv6EmbeddedRefusedInner(t *testing.T) {
	if os.Getenv(v6Env) == "" {
		t.Skip("run by TestIPv6EmbeddedRefused inside its namespace")
	}
	// Nothing but loopback, or the test stops here: a broken proxy must not
	// be able to reach any of these addresses.
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s in the test's namespace: refusing to run", i.Name)
		}
	}
	p := Start(t, v6Config, nil)

	refused := func(t *testing.T, raw string) {
		t.Helper()
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", raw)
		if resp.StatusCode != 403 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if ps := resp.Header.Get("Proxy-Status"); ps != "egress; error=destination_ip_prohibited" {
			t.Fatalf("Proxy-Status %q", ps)
		}
	}
	for _, tt := range []struct{ target, msg string }{
		// The literals.
		{"[64:ff9b::a9fe:a9fe]:443", "64:ff9b::a9fe:a9fe (embeds 169.254.169.254)"}, // NAT64 of the metadata address
		{"[64:ff9b::7f00:1]:443", "64:ff9b::7f00:1 (embeds 127.0.0.1)"},
		{"[::ffff:0:7f00:1]:443", "::ffff:0:7f00:1 (embeds 127.0.0.1)"}, // IPv4-translated
		{"[::7f00:1]:443", "::7f00:1 (embeds 127.0.0.1)"},               // IPv4-compatible
		// And their relatives.
		{"[64:ff9b::a00:1]:443", "64:ff9b::a00:1 (embeds 10.0.0.1)"},
		{"[64:ff9b:1::a00:1]:443", "64:ff9b:1::a00:1"},                            // local-use NAT64
		{"[2002:a9fe:a9fe::1]:443", "2002:a9fe:a9fe::1 (embeds 169.254.169.254)"}, // 6to4
		{"[2001:0:4136:e378:8000:63bf:80ff:fffe]:443", "(embeds 127.0.0.1)"},      // Teredo
		{"[::ffff:127.0.0.1]:443", "prohibited: 127.0.0.1"},                       // IPv4-mapped
	} {
		t.Run("connect "+tt.target, func(t *testing.T) {
			refused(t, "CONNECT "+tt.target+" HTTP/1.1\r\nHost: "+tt.target+"\r\n\r\n")
			p.WaitEvent(t, 5*time.Second, func(e Event) bool {
				return e.Str("event.reason") == "private_destination" && strings.Contains(e.Str("error.message"), tt.msg)
			})
		})
	}
	for _, name := range []string{"nat64.test", "metadata.test", "sixtofour.test"} {
		t.Run("hosts "+name, func(t *testing.T) {
			refused(t, "CONNECT "+name+":443 HTTP/1.1\r\nHost: "+name+":443\r\n\r\n")
			refused(t, "GET http://"+name+"/ HTTP/1.1\r\nHost: "+name+"\r\n\r\n")
			p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "private_destination", "destination.domain", name))
		})
	}
	// Never dialed: a dial here fails (network unreachable) and would be
	// counted.
	if v := metricValue(t, p, `egress_upstream_errors_total{reason="destination_unavailable"}`); v != 0 {
		t.Fatalf("egress dialed a refused address: destination_unavailable = %v", v)
	}
	if strings.Contains(p.Stderr(), "unreachable") {
		t.Fatalf("a dial in the log:\n%s", p.Stderr())
	}
}
