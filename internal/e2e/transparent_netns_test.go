package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// The network-namespace test redirects a client's real port-443 and port-80
// traffic with nftables, as a router would, and checks that egress decides it
// with the client's own address. Two namespaces the test creates: "proxy host"
// (egress, origins on its loopback, the nft REDIRECT rules) and "client"
// (one veth to the proxy host, default route through it). The client dials
// TEST-NET-1 192.0.2.10; the packets never leave the two namespaces.
//
// The outer test sets the namespaces up and runs this test binary again inside
// the proxy host's namespace, where the inner test starts egress with the
// usual harness.

const (
	nsEnv       = "EGRESS_E2E_NETNS_CLIENT" // set for the inner run: the client namespace
	nsProxyIP   = "10.213.0.1"
	nsClientIP  = "10.213.0.2"
	nsTarget    = "192.0.2.10"
	nsHTTPSPort = 18443
	nsHTTPPort  = 18080
	nsQUICPort  = 18444 // UDP
)

func TestTransparentNetns(t *testing.T) {
	if os.Getenv(nsEnv) != "" {
		t.Skip("inner run")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP netns: needs root (ip netns, nft)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP netns: %s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	suffix := fmt.Sprint(os.Getpid())
	proxyNS, clientNS := "egtp-p"+suffix, "egtp-c"+suffix
	if err := run("ip", "netns", "add", proxyNS); err != nil {
		t.Skipf("SKIP netns: cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", proxyNS).Run() })
	if err := run("ip", "netns", "add", clientNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", clientNS).Run() })

	ruleset := fmt.Sprintf(`table inet egress {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "vp" tcp dport 443 redirect to :%d
    iifname "vp" tcp dport 80 redirect to :%d
    iifname "vp" udp dport 443 redirect to :%d
  }
}
`, nsHTTPSPort, nsHTTPPort, nsQUICPort)
	steps := [][]string{
		// The veth pair is created inside the namespaces: nothing in ours.
		{"ip", "-n", proxyNS, "link", "add", "vp", "type", "veth", "peer", "name", "vc", "netns", clientNS},
		{"ip", "-n", proxyNS, "link", "set", "lo", "up"},
		{"ip", "-n", proxyNS, "addr", "add", nsProxyIP + "/24", "dev", "vp"},
		{"ip", "-n", proxyNS, "link", "set", "vp", "up"},
		{"ip", "-n", clientNS, "link", "set", "lo", "up"},
		{"ip", "-n", clientNS, "addr", "add", nsClientIP + "/24", "dev", "vc"},
		{"ip", "-n", clientNS, "link", "set", "vc", "up"},
		{"ip", "-n", clientNS, "route", "add", "default", "via", nsProxyIP},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatal(err)
		}
	}
	nft := exec.CommandContext(ctx, "ip", "netns", "exec", proxyNS, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(ruleset)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Skipf("SKIP netns: nft cannot load a nat ruleset here (%v: %s)", err, out)
	}

	inner := exec.CommandContext(ctx, "ip", "netns", "exec", proxyNS, os.Args[0],
		"-test.run", "^TestTransparentNetnsInner$", "-test.count", "1", "-test.v")
	inner.Env = append(os.Environ(), nsEnv+"="+clientNS)
	var out bytes.Buffer
	inner.Stdout, inner.Stderr = &out, &out
	err := inner.Run()
	t.Logf("inner run in %s:\n%s", proxyNS, out.String())
	if err != nil {
		t.Fatalf("inner run: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: TestTransparentNetnsInner") {
		t.Fatal("inner test did not pass")
	}
}

// dialInNS connects to addr from network namespace ns. The socket is made on
// a thread that entered ns; that thread is never handed back to the runtime
// (the goroutine ends locked, so the thread exits).
func dialInNS(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %v", err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func TestTransparentNetnsInner(t *testing.T) {
	clientNS := os.Getenv(nsEnv)
	if clientNS == "" {
		t.Skip("run by TestTransparentNetns inside its namespace")
	}
	ca := NewCA(t)
	tlsOrigin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	httpOrigin := NewOrigin(t, nil, nil)
	quicOrigin := newQUICOrigin(t, ca, false, "allowed.test", "www.tiktok.com")
	cfg := strings.NewReplacer("{{HTTPS}}", fmt.Sprintf("%s:%d", nsProxyIP, nsHTTPSPort),
		"{{HTTP}}", fmt.Sprintf("%s:%d", nsProxyIP, nsHTTPPort),
		"transparent {", fmt.Sprintf("transparent {\n  quic_listen = \"0.0.0.0:%d\"\n  quic_port   = %d", nsQUICPort, quicOrigin.Port),
	).Replace(tpConfig(tlsOrigin.Port, httpOrigin.Port, `
segment "netns-clients" {
  sources  = ["10.213.0.0/24"]
  default  = "allow"
  policies = ["base"]
}
`))
	p := Start(t, cfg, nil)

	c, err := dialInNS(clientNS, nsTarget+":443")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/netns")
	if err != nil || !strings.Contains(body, "hello from allowed.test /netns") {
		t.Fatalf("allowed: %q, %v", body, err)
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_https" && e.Str("tls.client.server_name") == "allowed.test" &&
			e.Str("event.duration") != ""
	})
	if ev.Str("source.ip") != nsClientIP || ev.Str("egress.segment") != "netns-clients" || ev.Str("event.action") != "allow" {
		t.Fatalf("event %v", ev)
	}

	c, err = dialInNS(clientNS, nsTarget+":443")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := HTTPSGet(c, "www.tiktok.com", ca.Pool, "/"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("tiktok: want access_denied, got %v", err)
	}
	ev = tpEvent(t, p, "transparent_https", "tls.client.server_name", "www.tiktok.com")
	if ev.Str("source.ip") != nsClientIP || ev.Str("event.action") != "deny" {
		t.Fatalf("event %v", ev)
	}

	// No SNI: denied, and the event names the address the client dialed
	// before the redirect (SO_ORIGINAL_DST).
	c, err = dialInNS(clientNS, nsTarget+":443")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: nsTarget, InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("no SNI: want access_denied, got %v", err)
	}
	ev = tpEvent(t, p, "transparent_https", "event.reason", "missing_sni")
	if ev.Str("source.ip") != nsClientIP || ev.Str("destination.ip") != nsTarget {
		t.Fatalf("no SNI event: source %s destination %s, want %s → %s", ev.Str("source.ip"), ev.Str("destination.ip"), nsClientIP, nsTarget)
	}

	c, err = dialInNS(clientNS, nsTarget+":80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /plain HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf bytes.Buffer
	buf.ReadFrom(c)
	if !strings.HasPrefix(buf.String(), "HTTP/1.1 200") || !strings.Contains(buf.String(), "/plain") {
		t.Fatalf("plain: %q", buf.String())
	}
	ev = tpEvent(t, p, "transparent_http", "url.path", "/plain")
	if ev.Str("source.ip") != nsClientIP || ev.Str("event.action") != "allow" {
		t.Fatalf("event %v", ev)
	}

	// QUIC: UDP 443 redirected to the QUIC listener; the answers go back
	// through the same NAT entry, as if from the address dialed.
	pc, err := listenUDPInNS(clientNS)
	if err != nil {
		t.Fatal(err)
	}
	target := &net.UDPAddr{IP: net.ParseIP(nsTarget), Port: 443}
	h3 := newH3ClientOn(t, pc, target, ca.Pool)
	if body, err := h3.Get("https://allowed.test/netns"); err != nil || body != "h3 ok allowed.test" {
		t.Fatalf("QUIC allowed: %q, %v", body, err)
	}
	h3.Close()
	pc, err = listenUDPInNS(clientNS)
	if err != nil {
		t.Fatal(err)
	}
	h3 = newH3ClientOn(t, pc, target, ca.Pool)
	_, err = h3.Get("https://www.tiktok.com/")
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != 0x131 {
		t.Fatalf("QUIC tiktok: want CRYPTO_ERROR 0x131, got %v", err)
	}
	ev = tpEvent(t, p, "transparent_quic", "tls.client.server_name", "www.tiktok.com")
	if ev.Str("source.ip") != nsClientIP || ev.Str("event.action") != "deny" || ev.Str("egress.segment") != "netns-clients" {
		t.Fatalf("QUIC event %v", ev)
	}
	if n := quicOrigin.Requests.Load(); n != 1 {
		t.Fatalf("QUIC origin served %d requests, want 1", n)
	}
}

// listenUDPInNS opens a UDP socket in network namespace ns (see dialInNS).
func listenUDPInNS(ns string) (*net.UDPConn, error) {
	type result struct {
		c   *net.UDPConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %v", err)}
			return
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4zero})
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
