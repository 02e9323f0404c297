package httpproxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/identity"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"
)

// A CONNECT read whole on the parker is served there (evented_linux.go,
// inlineState): no goroutine unless a step would wait. These tests check
// which connections take that path, that what would wait goes on on a
// worker (a DNS lookup, the next request after a 407, an identity source),
// and what hostile clients do to it.

// inlineSeen records, through testHookIdle, whether each request loop
// that went idle ran on a parker (the hook runs there too: it must not
// wait).
func inlineSeen(t *testing.T) chan bool {
	seen := make(chan bool, 64)
	hook := func(cn *conn) {
		select {
		case seen <- cn.inline:
		default:
		}
	}
	testHookIdle.Store(&hook)
	t.Cleanup(func() { testHookIdle.Store(nil) })
	return seen
}

func wantSeen(t *testing.T, seen chan bool, want bool, what string) {
	t.Helper()
	select {
	case got := <-seen:
		if got != want {
			t.Fatalf("%s: on a parker %v, want %v", what, got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: its loop never went idle", what)
	}
}

// readStatus reads one response to a CONNECT from br.
func readStatus(t *testing.T, br *bufio.Reader, what string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.StatusCode != 200 { // a 200's "body" is the tunnel
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp
}

// TestInlineConnect: which CONNECTs are served on the parker, and that each
// is answered as on a worker: an allowed one whole (its tunnel works), one
// in three parts (on a worker, as the loop must wait for the rest), a
// denied one (403 and its event), a malformed target (400).
func TestInlineConnect(t *testing.T) {
	l := newEvLoop(t, "")
	port, got := echoOrigin(t)
	seen := inlineSeen(t)
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)

	connectThrough(t, l, port, got, req).Close()
	wantSeen(t, seen, true, "a CONNECT read whole")
	connectThrough(t, l, port, got, req[:10], req[10:30], req[30:]).Close()
	wantSeen(t, seen, false, "a CONNECT in three parts")

	c := l.dial()
	c.Write([]byte("CONNECT banned.test:443 HTTP/1.1\r\nHost: banned.test:443\r\n\r\n"))
	if resp := readStatus(t, bufio.NewReader(c), "denied"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied CONNECT: %d", resp.StatusCode)
	}
	wantSeen(t, seen, true, "a denied CONNECT")
	waitFor(t, 5*time.Second, func() bool {
		for _, ev := range l.sink.all() {
			if ev.DestDomain == "banned.test" && ev.Action == "deny" && ev.Status == http.StatusForbidden {
				return true
			}
		}
		return false
	}, "the denied CONNECT's event")

	c = l.dial()
	c.Write([]byte("CONNECT no-port HTTP/1.1\r\nHost: no-port\r\n\r\n"))
	if resp := readStatus(t, bufio.NewReader(c), "malformed"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("CONNECT without a port: %d", resp.StatusCode)
	}
	wantSeen(t, seen, true, "a malformed CONNECT")
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked")
}

// gateResolver answers every lookup with 127.0.0.1, once the test opens
// the gate; started reports each lookup as it begins.
type gateResolver struct {
	started chan string
	gate    chan struct{}
}

func (r *gateResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	r.started <- host
	select {
	case <-r.gate:
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestInlineLookupOnWorker: a CONNECT to a name that needs DNS leaves the
// parker for its lookup. While the lookup hangs, every parker goes on
// serving other CONNECTs; once it answers, the first tunnel is made.
func TestInlineLookupOnWorker(t *testing.T) {
	dns := &gateResolver{started: make(chan string, 4), gate: make(chan struct{})}
	l := newEvLoopOf(t, func(dir string) *rules.Config { return loadLoopConfig(t, dir, "", loopAllowed) },
		func(st *active.State) { st.Dialer.Resolver = dns })
	port, got := echoOrigin(t)
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(dns.gate)
		}
	}
	defer open()

	c := l.dial()
	fmt.Fprintf(c, "CONNECT nxdomain.test:%d HTTP/1.1\r\nHost: nxdomain.test:%d\r\n\r\n", port, port)
	select {
	case h := <-dns.started:
		if h != "nxdomain.test" {
			t.Fatalf("looked up %q", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no lookup")
	}
	// The lookup hangs: other CONNECTs, on every parker, are served.
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	for i := 0; i < 8; i++ {
		connectThrough(t, l, port, got, req).Close()
	}
	open()
	br := bufio.NewReader(c)
	if resp := readStatus(t, br, "after the lookup"); resp.StatusCode != 200 {
		t.Fatalf("after the lookup: %d", resp.StatusCode)
	}
	helloThrough(t, c, br, got, "nxdomain.test")
}

// peekResolver holds a fresh answer for nxdomain.test (as the DNS cache
// would after a first lookup) and hangs every lookup.
type peekResolver struct{ gateResolver }

func (r *peekResolver) Peek(host string) ([]netip.Addr, bool, error) {
	if host == "nxdomain.test" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, true, nil
	}
	return nil, false, nil
}

// TestInlineCachedNameOnParker: a CONNECT to a name the DNS cache holds is
// served on the parker, without a lookup and without a worker, as one in
// upstream.hosts is; a name it does not hold still leaves for a worker.
func TestInlineCachedNameOnParker(t *testing.T) {
	dns := &peekResolver{gateResolver{started: make(chan string, 4), gate: make(chan struct{})}}
	l := newEvLoopOf(t, func(dir string) *rules.Config { return loadLoopConfig(t, dir, "", loopAllowed+`, "uncached.test"`) },
		func(st *active.State) { st.Dialer.Resolver = dns })
	port, got := echoOrigin(t)
	seen := inlineSeen(t)
	defer close(dns.gate)

	c := l.dial()
	fmt.Fprintf(c, "CONNECT nxdomain.test:%d HTTP/1.1\r\nHost: nxdomain.test:%d\r\n\r\n", port, port)
	br := bufio.NewReader(c)
	if resp := readStatus(t, br, "cached name"); resp.StatusCode != 200 {
		t.Fatalf("cached name: %d", resp.StatusCode)
	}
	helloThrough(t, c, br, got, "nxdomain.test")
	c.Close()
	wantSeen(t, seen, true, "a CONNECT to a cached name")
	select {
	case h := <-dns.started:
		t.Fatalf("a cached name was looked up: %q", h)
	default:
	}

	c = l.dial()
	fmt.Fprintf(c, "CONNECT uncached.test:%d HTTP/1.1\r\nHost: uncached.test:%d\r\n\r\n", port, port)
	select {
	case h := <-dns.started:
		if h != "uncached.test" {
			t.Fatalf("looked up %q", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a name the cache does not hold was not looked up")
	}
}

// selfSigned writes a self-signed CA certificate and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy.test"},
		DNSNames: []string{"proxy.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600)
	return certFile, keyFile
}

// authConfig is a require_auth segment; %s is the identity source: client
// certificates on the TLS listener (no Proxy-Authorization source), or an
// htpasswd file.
const authConfig = `
%s
upstream {
  allow_private = ["127.0.0.1/32"]
  hosts = { "allowed.test" = "127.0.0.1" }
}
segment "lan" {
  sources      = ["127.0.0.0/8"]
  default      = "allow"
  require_auth = true
}
`

func loadAuthConfig(t *testing.T, dir, source string) *rules.Config {
	t.Helper()
	p := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(authConfig, source)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return cfg
}

// TestInlineRequireAuthReparked: on a require_auth segment whose only
// identity is a client certificate (no identity source to wait for), a
// CONNECT on the plain listener is answered 407 on the parker, and the
// connection waits for its next request on a parker again (no goroutine):
// a second CONNECT a moment later gets its 407 there too. One sent right
// behind the first, in the same write, is read with it and served on a
// worker.
func TestInlineRequireAuthReparked(t *testing.T) {
	l := newEvLoopOf(t, func(dir string) *rules.Config {
		cert, key := selfSigned(t, dir)
		return loadAuthConfig(t, dir, fmt.Sprintf(`proxy {
  listen         = "127.0.0.1:0"
  tls_listen     = "127.0.0.2:0"
  tls_cert_file  = %q
  tls_key_file   = %q
  client_ca_file = %q
}`, cert, key, cert))
	}, nil)
	if l.s.Active.Load().Auth != nil {
		t.Fatal("an identity source with client certificates only")
	}
	seen := inlineSeen(t)
	c := l.dial()
	br := bufio.NewReader(c)
	req := "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"
	for i, what := range []string{"first", "second", "third"} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		c.Write([]byte(req))
		if resp := readStatus(t, br, what); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("%s CONNECT: %d, want 407", what, resp.StatusCode)
		}
		wantSeen(t, seen, true, "the "+what+" CONNECT")
	}

	c = l.dial()
	br = bufio.NewReader(c)
	c.Write([]byte(req + req))
	for _, what := range []string{"first", "pipelined"} {
		if resp := readStatus(t, br, what); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("%s CONNECT: %d, want 407", what, resp.StatusCode)
		}
	}
	wantSeen(t, seen, true, "the first of two CONNECTs in one write")
	wantSeen(t, seen, false, "the second of two CONNECTs in one write")
}

// TestInlineReparkedEnds: a connection waiting on a parker again after its
// 407 is closed by idle_timeout (not header_timeout) without a byte, and by
// a shutdown at once; either way nothing stays tracked, no goroutine is
// left, and a client that is gone meanwhile costs nothing either.
func TestInlineReparkedEnds(t *testing.T) {
	l := newEvLoopOf(t, func(dir string) *rules.Config {
		return htpasswdConfigWith(t, dir, `limits {
  header_timeout = "10s"
  idle_timeout   = "400ms"
}`)
	}, nil)
	seen := inlineSeen(t)
	req := "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"
	ask := func() (net.Conn, *bufio.Reader) {
		c := l.dial()
		br := bufio.NewReader(c)
		c.Write([]byte(req))
		if resp := readStatus(t, br, "no credentials"); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("without credentials: %d, want 407", resp.StatusCode)
		}
		wantSeen(t, seen, true, "a CONNECT without credentials")
		return c, br
	}
	c, br := ask()
	g0 := runtime.NumGoroutine()
	start := time.Now()
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the 407: %v, want the connection closed by idle_timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v, want about idle_timeout (400ms)", d)
	}
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked after idle_timeout")
	if g := runtime.NumGoroutine(); g > g0+2 {
		t.Errorf("%d goroutines, %d before", g, g0)
	}
	c.Close()

	gone, _ := ask()
	gone.Close()
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked once the client is gone")

	c, br = ask()
	// The client may read its 407 before the parker has the connection
	// waiting again; a shutdown calls CloseIdle until its grace ends, and so
	// does this (CI, a loaded machine: one call found it still reparking).
	closed := 0
	waitFor(t, 5*time.Second, func() bool { closed += l.track.CloseIdle(); return closed > 0 }, "CloseIdle to close the one waiting")
	if closed != 1 {
		t.Errorf("CloseIdle closed %d, want the one waiting", closed)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the shutdown: %v, want the connection closed", err)
	}
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked after the shutdown")
}

// htpasswdConfig is authConfig with an htpasswd file of one user, alice,
// as its identity source; aliceAuth is her Proxy-Authorization value.
func htpasswdConfig(t *testing.T, dir string) *rules.Config { return htpasswdConfigWith(t, dir, "") }

// htpasswdConfigWith is htpasswdConfig with extra blocks.
func htpasswdConfigWith(t *testing.T, dir, extra string) *rules.Config {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw-Secret-1"), 4)
	users := filepath.Join(dir, "users.htpasswd")
	os.WriteFile(users, []byte("alice:"+string(h)+"\n"), 0o600)
	return loadAuthConfig(t, dir, fmt.Sprintf("auth {\n  htpasswd_file = %q\n  allow_basic_without_tls = true\n}\n%s", users, extra))
}

var aliceAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw-Secret-1"))

// TestInlineIdentitySource: with an identity source configured (an LDAP
// bind or a Kerberos check may take seconds), a CONNECT without credentials
// is still answered on the parker (407: nothing to check), while one with
// credentials is served on a worker: the next request on that connection,
// and a new connection's first CONNECT, whatever the field's case.
func TestInlineIdentitySource(t *testing.T) {
	l := newEvLoopOf(t, func(dir string) *rules.Config { return htpasswdConfig(t, dir) }, nil)
	port, got := echoOrigin(t)
	seen := inlineSeen(t)
	c := l.dial()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	if resp := readStatus(t, br, "no credentials"); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("without credentials: %d, want 407", resp.StatusCode)
	}
	wantSeen(t, seen, true, "a CONNECT without credentials")
	fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\nProxy-Authorization: %s\r\n\r\n", port, port, aliceAuth)
	if resp := readStatus(t, br, "credentials"); resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d", resp.StatusCode)
	}
	wantSeen(t, seen, false, "the next CONNECT, with credentials")
	helloThrough(t, c, br, got, "allowed.test")
	c.Close()

	for _, field := range []string{"Proxy-Authorization", "proxy-AUTHORIZATION"} {
		c := l.dial()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n%s: %s\r\n\r\n", port, port, field, aliceAuth)
		if resp := readStatus(t, br, field); resp.StatusCode != 200 {
			t.Fatalf("%s first: %d", field, resp.StatusCode)
		}
		wantSeen(t, seen, false, "a first CONNECT with "+field)
		helloThrough(t, c, br, got, "allowed.test")
		c.Close()
	}
}

// TestInlineNeedsCheck: the loop's own check of a request the parker let
// through (inlineWaits), on the parsed header: credentials for a
// configured identity source, or any other method, go to a worker.
func TestInlineNeedsCheck(t *testing.T) {
	auth := &active.State{Auth: &identity.Authenticator{}}
	none := &active.State{}
	for _, tc := range []struct {
		st    *active.State
		req   string
		waits bool
	}{
		{none, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", false},
		{none, "CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n", false},
		{auth, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", false},
		{auth, "CONNECT a.test:443 HTTP/1.1\r\nproxy-authorization: Basic eA==\r\n\r\n", true},
		{auth, "CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization:\r\n\r\n", true},
		{none, "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", true},
	} {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tc.req)))
		if err != nil {
			t.Fatal(err)
		}
		if got := inlineWaits(tc.st, req); got != tc.waits {
			t.Errorf("%q (source %v): waits %v, want %v", tc.req, tc.st.Auth != nil, got, tc.waits)
		}
	}
	for _, tc := range []struct {
		b    string
		want bool
	}{{"x: proxy-authorization", true}, {"PROXY-Authorization: a", true}, {"Proxy-Authorizatio: a", false}, {"", false}} {
		if got := containsFold([]byte(tc.b), "proxy-authorization"); got != tc.want {
			t.Errorf("containsFold(%q) = %v", tc.b, got)
		}
	}
}

// TestInlineHostileClients: clients that send a CONNECT whole and are gone
// at once (a reset, a FIN), allowed and denied, many at a time. Each ends,
// no descriptor is left, and a good client is served afterwards.
func TestInlineHostileClients(t *testing.T) {
	l := newEvLoop(t, "")
	port, got := echoOrigin(t)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	allowed := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	denied := "CONNECT banned.test:443 HTTP/1.1\r\nHost: banned.test:443\r\n\r\n"
	connectThrough(t, l, port, got, allowed).Close() // warm up
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "the warm-up over")
	time.Sleep(50 * time.Millisecond)
	f0 := fds()
	var wg sync.WaitGroup
	for i := 0; i < 120; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			req := allowed
			if i%2 == 1 {
				req = denied
			}
			switch i % 4 {
			case 0, 1: // a reset right behind the request
				c.(*net.TCPConn).SetLinger(0)
				c.Write([]byte(req))
			case 2: // the request and a FIN
				c.Write([]byte(req))
				c.(*net.TCPConn).CloseWrite()
				time.Sleep(10 * time.Millisecond)
			case 3: // twice in one write
				c.Write([]byte(req + req))
			}
			c.Close()
		}(i)
	}
	wg.Wait()
	waitFor(t, 10*time.Second, func() bool { return l.track.Open() == 0 }, "every hostile connection ended")
	waitFor(t, 5*time.Second, func() bool { return fds() <= f0 }, "no descriptor left")
	connectThrough(t, l, port, got, allowed).Close()
	if n := testutil.ToFloat64(l.s.Metrics.Panics.WithLabelValues(l.s.listener())); n != 0 {
		t.Fatalf("%v panics", n)
	}
}

// TestInlinePanic: a panic while a CONNECT is served on the parker (a bug)
// is counted, closes that connection, and the parker goes on serving.
func TestInlinePanic(t *testing.T) {
	l := newEvLoop(t, "")
	port, got := echoOrigin(t)
	hook := func(cn *conn) {
		if cn.inline {
			panic("test: a bug on the parker")
		}
	}
	testHookIdle.Store(&hook)
	defer testHookIdle.Store(nil)
	for i := 0; i < 4; i++ {
		c := l.dial()
		fmt.Fprintf(c, "CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("after the panic: %d bytes, %v; want the connection closed", n, err)
		}
	}
	if n := testutil.ToFloat64(l.s.Metrics.Panics.WithLabelValues(l.s.listener())); n != 4 {
		t.Fatalf("egress_panics_total %v, want 4", n)
	}
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked")
	testHookIdle.Store(nil)
	req := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	connectThrough(t, l, port, got, req[:20], req[20:]).Close()
	connectThrough(t, l, port, got, req).Close()
}

// TestWaitingPanicReleasesLock: a panic while the first bytes are read and
// handed on (a bug; here the Server has no config) unwinds with wt.mu
// released, so that SocketPanic's Close can take it and close the
// connection.
func TestWaitingPanicReleasesLock(t *testing.T) {
	peer, sock := sockPair(t)
	if _, err := peer.Write([]byte("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	wt := &waiting{s: &Server{}, sock: sock}
	waitFor(t, 5*time.Second, func() bool {
		panicked := false
		func() {
			defer func() { panicked = recover() != nil }()
			wt.SocketEvent(0, 0)
		}()
		return panicked
	}, "the panic (the bytes read)")
	if !wt.mu.TryLock() {
		t.Fatal("wt.mu still held after the panic: SocketPanic's Close would wait forever")
	}
	wt.mu.Unlock()
}

// TestInlineDeniedFloodNoGoroutines: a flood of denied CONNECTs sent whole
// (an app retrying a blocked name), 16 clients at a time, is answered on
// the parkers: no worker goroutine is started or left waiting, no
// descriptor and nothing tracked stays behind, and an allowed client is
// served right after.
func TestInlineDeniedFloodNoGoroutines(t *testing.T) {
	l := newEvLoop(t, "")
	port, got := echoOrigin(t)
	allowed := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", port, port)
	floodOnParkers(t, l, func() { connectThrough(t, l, port, got, allowed).Close() },
		"CONNECT banned.test:443 HTTP/1.1\r\nHost: banned.test:443\r\n\r\n", http.StatusForbidden, "banned.test")
}

// TestInlineUnidentifiedFloodNoGoroutines: with an identity source
// configured, a flood of CONNECTs without credentials (a hostile client, or
// every browser's first try) gets its 407s on the parkers, with no
// goroutine, descriptor or registry entry left; a client with credentials
// is served right after.
func TestInlineUnidentifiedFloodNoGoroutines(t *testing.T) {
	l := newEvLoopOf(t, func(dir string) *rules.Config { return htpasswdConfig(t, dir) }, nil)
	port, got := echoOrigin(t)
	allowed := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\nProxy-Authorization: %s\r\n\r\n", port, port, aliceAuth)
	floodOnParkers(t, l, func() { connectThrough(t, l, port, got, allowed).Close() },
		"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n", http.StatusProxyAuthRequired, "allowed.test")
}

// floodOnParkers sends 16 × 25 CONNECTs (req, each on a new connection)
// that must be answered status on the parkers, one deny event each for
// domain; through is an allowed client, run before (a warm-up) and after.
func floodOnParkers(t *testing.T, l *evLoop, through func(), req string, status int, domain string) {
	t.Helper()
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	through() // warm up
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "the warm-up over")
	time.Sleep(50 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), fds()
	const clients, each = 16, 25
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < each; k++ {
				c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte(req))
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
				c.Close()
				if err != nil || resp.StatusCode != status {
					t.Errorf("CONNECT: %v %v, want %d", resp, err, status)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "every connection of the flood ended")
	waitFor(t, 5*time.Second, func() bool { return fds() <= f0 }, "no descriptor left")
	// Workers wait 5 s after their connection: any started would still be here.
	if g := runtime.NumGoroutine(); g > g0+3 {
		t.Fatalf("%d goroutines after %d CONNECTs answered %d, %d before: workers were started", g, clients*each, status, g0)
	}
	waitFor(t, 5*time.Second, func() bool {
		n := 0
		for _, ev := range l.sink.all() {
			if ev.DestDomain == domain && ev.Action == "deny" && ev.Status == status {
				n++
			}
		}
		return n == clients*each
	}, "one deny event per CONNECT")
	through()
}

// TestInlineLookupClientGone: clients whose CONNECT needs a DNS lookup (on
// a worker) and who are gone while it hangs, by a reset or a FIN. Once the
// lookup answers, each ends with its one event (after a reset, allowed with
// the client gone before its 200; after a FIN, the 200 goes out and no hello
// comes: a deny), nothing is tracked and no descriptor is left.
func TestInlineLookupClientGone(t *testing.T) {
	dns := &gateResolver{started: make(chan string, 16), gate: make(chan struct{})}
	l := newEvLoopOf(t, func(dir string) *rules.Config { return loadLoopConfig(t, dir, "", loopAllowed) },
		func(st *active.State) { st.Dialer.Resolver = dns })
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	time.Sleep(50 * time.Millisecond)
	f0 := fds()
	const n = 6
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("CONNECT nxdomain.test:443 HTTP/1.1\r\nHost: nxdomain.test:443\r\n\r\n"))
		select {
		case <-dns.started:
		case <-time.After(5 * time.Second):
			t.Fatal("no lookup")
		}
		if i%2 == 0 {
			c.(*net.TCPConn).SetLinger(0) // a reset
		} else {
			c.(*net.TCPConn).CloseWrite()
		}
		c.Close()
	}
	close(dns.gate)
	waitFor(t, 10*time.Second, func() bool { return l.track.Open() == 0 }, "every connection ended")
	waitFor(t, 5*time.Second, func() bool { return fds() <= f0 }, "no descriptor left")
	defer func() {
		if t.Failed() {
			for _, ev := range l.sink.all() {
				t.Logf("event %s %s %q", ev.DestDomain, ev.Action, ev.Error)
			}
		}
	}()
	waitFor(t, 5*time.Second, func() bool {
		gone, truncated := 0, 0
		for _, ev := range l.sink.all() {
			switch {
			case ev.DestDomain != "nxdomain.test":
			case ev.Action == "allow" && strings.Contains(ev.Error, "client gone before the 200"):
				gone++ // a reset: the 200 could not be written
			case ev.Action == "deny" && strings.Contains(ev.Error, "client hello truncated"):
				truncated++ // a FIN: the 200 went out, no hello came
			}
		}
		return gone == n/2 && truncated == n/2
	}, "one event per CONNECT: a reset's client gone before its 200, a FIN's hello missing")
	if testing.Verbose() {
		for _, ev := range l.sink.all() {
			t.Logf("%+v", *ev)
		}
	}
}

// TestInlineReparkedHostile: clients that, once their 407 put them back to
// wait on a parker, send too little (one byte, then nothing), too much (a
// header past max_header_bytes), the wrong thing (TLS bytes), the same
// CONNECT fifty times, two at once, or reset. Each gets what a new
// connection would (header_timeout, 431, 400, a 407 each, a reset ends it);
// a client with credentials is served while they are at it; afterwards
// nothing stays tracked, no descriptor is left, and the only goroutines
// left are idle workers.
func TestInlineReparkedHostile(t *testing.T) {
	l := newEvLoopOf(t, func(dir string) *rules.Config {
		return htpasswdConfigWith(t, dir, `limits {
  header_timeout   = "1s"
  max_header_bytes = 8192
}`)
	}, nil)
	port, got := echoOrigin(t)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	req := "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n"
	authed := fmt.Sprintf("CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test:%d\r\nProxy-Authorization: %s\r\n\r\n", port, port, aliceAuth)
	connectThrough(t, l, port, got, authed).Close() // warm up
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "the warm-up over")
	time.Sleep(50 * time.Millisecond)
	g0, f0 := runtime.NumGoroutine(), fds()

	asked := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		c.Write([]byte(req))
		if resp := readStatus(t, br, "first"); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("first CONNECT: %d, want 407", resp.StatusCode)
		}
		return c, br
	}
	// closedWith reads what the proxy says before it closes: a status
	// (0 for none) and whether the connection then ended.
	closedWith := func(c net.Conn, br *bufio.Reader) (int, bool) {
		defer c.Close()
		status := 0
		if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err == nil {
			status = resp.StatusCode
			io.Copy(io.Discard, resp.Body)
		}
		_, err := br.ReadByte()
		return status, err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}

	slow, slowBR := asked()
	slow.Write([]byte("C"))
	big, bigBR := asked()
	big.Write([]byte("CONNECT allowed.test:443 HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\n\r\n"))
	notHTTP, notHTTPBR := asked()
	notHTTP.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	reset, _ := asked()
	reset.(*net.TCPConn).SetLinger(0)
	reset.Close()
	twice, twiceBR := asked()
	twice.Write([]byte(req + req))
	for _, what := range []string{"the first of two", "the second of two"} {
		if resp := readStatus(t, twiceBR, what); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("%s: %d, want 407", what, resp.StatusCode)
		}
	}
	many, manyBR := asked()
	for i := 0; i < 50; i++ {
		many.Write([]byte(req))
		if resp := readStatus(t, manyBR, "again"); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("CONNECT %d on one connection: %d, want 407", i+2, resp.StatusCode)
		}
	}

	// Meanwhile, a client with credentials is served.
	connectThrough(t, l, port, got, authed).Close()

	if st, ended := closedWith(big, bigBR); st != http.StatusRequestHeaderFieldsTooLarge || !ended {
		t.Errorf("a header past max_header_bytes: %d, ended %v; want 431 and the close", st, ended)
	}
	if st, ended := closedWith(notHTTP, notHTTPBR); st != http.StatusBadRequest || !ended {
		t.Errorf("TLS bytes for a request: %d, ended %v; want 400 and the close", st, ended)
	}
	start := time.Now()
	if st, ended := closedWith(slow, slowBR); !ended || st == http.StatusOK {
		t.Errorf("one byte, then nothing: %d, ended %v; want the close", st, ended)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("one byte, then nothing: closed after %v, want about header_timeout (1s)", d)
	}
	twice.Close()
	many.Close()
	waitFor(t, 5*time.Second, func() bool { return l.track.Open() == 0 }, "nothing tracked")
	waitFor(t, 5*time.Second, func() bool { return fds() <= f0 }, "no descriptor left")
	// Workers (the slow, big and TLS clients') wait idle for a while: a few.
	if g := runtime.NumGoroutine(); g > g0+8 {
		t.Fatalf("%d goroutines after the hostile clients, %d before", g, g0)
	}
}
