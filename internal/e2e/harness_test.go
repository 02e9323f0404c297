package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binary is the egress binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "egress-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "egress")
	if b := os.Getenv("EGRESS_E2E_BINARY"); b != "" {
		// A prebuilt egress (e.g. an older commit, for before/after figures).
		binary = b
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	args := []string{"build", "-o", binary}
	if os.Getenv("EGRESS_E2E_RACE") != "" {
		args = append(args, "-race") // the proxy itself under the race detector
	}
	cmd := exec.Command("go", append(args, "github.com/egress-proxy/egress/cmd/egress")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building egress:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Proc is a running egress.
type Proc struct {
	t          testing.TB
	cmd        *exec.Cmd
	ProxyAddr  string
	AdminAddr  string
	HTTPSAddr  string // transparent, if configured
	HTTPAddr   string // transparent, if configured
	TLSAddr    string // the TLS proxy listener ({{PROXY_TLS}}), if configured
	ConfigPath string
	stdout     *lockedBuffer
	stderr     *lockedBuffer
	exited     chan struct{}
	exitErr    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Ports are substituted into configs: {{PROXY}}, {{ADMIN}}, {{HTTPS}}, {{HTTP}},
// {{PROXY_TLS}} become loopback listen addresses.
func fillPorts(t testing.TB, cfg string) (string, map[string]string) {
	addrs := map[string]string{}
	for _, k := range []string{"PROXY", "ADMIN", "HTTPS", "HTTP", "PROXY_TLS"} {
		addrs[k] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg = strings.ReplaceAll(cfg, "{{"+k+"}}", addrs[k])
	}
	return cfg, addrs
}

// Start writes cfg (with {{PROXY}} etc. filled) and runs egress on it until
// the test ends. The config must set proxy and admin listen to {{PROXY}} and
// {{ADMIN}}.
func Start(t testing.TB, cfg string, extraFiles map[string]string) *Proc {
	t.Helper()
	dir := t.TempDir()
	for name, content := range extraFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// freePort's ports were free a moment ago; another test package running
	// at the same time may take one first. Such a start is retried with new
	// ports (bounded); any other failure is the test's.
	for attempt := 1; ; attempt++ {
		p := startOnce(t, dir, cfg)
		if p.WaitReady(15 * time.Second) {
			t.Cleanup(func() {
				p.Stop(10 * time.Second)
				if strings.Contains(p.stderr.String(), "DATA RACE") {
					t.Errorf("the race detector found a data race in egress")
				}
				if t.Failed() {
					t.Logf("egress stderr:\n%s", p.stderr.String())
				}
			})
			return p
		}
		p.Stop(10 * time.Second)
		if attempt < 5 && strings.Contains(p.stderr.String(), "address already in use") {
			t.Logf("egress start %d: a port was taken meanwhile; again with new ports", attempt)
			continue
		}
		t.Fatalf("egress not ready; stderr:\n%s", p.stderr.String())
	}
}

// startOnce writes cfg (ports filled) into dir and starts egress on it.
func startOnce(t testing.TB, dir, cfg string) *Proc {
	t.Helper()
	cfg, addrs := fillPorts(t, cfg)
	path := filepath.Join(dir, "egress.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, ConfigPath: path, ProxyAddr: addrs["PROXY"], AdminAddr: addrs["ADMIN"],
		HTTPSAddr: addrs["HTTPS"], HTTPAddr: addrs["HTTP"], TLSAddr: addrs["PROXY_TLS"],
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, "run", "-config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	return p
}

// WaitReady polls /readyz.
func (p *Proc) WaitReady(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return false
		default:
		}
		resp, err := c.Get("http://" + p.AdminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.exitErr
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("egress did not exit within %v", timeout)
	}
}

// Exited returns a channel closed when the process ends.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Stderr is the process log so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Event is a decoded ECS event.
type Event map[string]any

// Get returns a dotted path ("event.action") of the event.
func (e Event) Get(path string) any {
	var cur any = map[string]any(e)
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// Str returns a dotted path as a string ("" if absent).
func (e Event) Str(path string) string {
	switch v := e.Get(path).(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(int64(v))
	case bool:
		return fmt.Sprint(v)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// Events returns every event written so far.
func (p *Proc) Events() []Event {
	var out []Event
	s := bufio.NewScanner(strings.NewReader(p.stdout.String()))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var e Event
		if err := json.Unmarshal(s.Bytes(), &e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// WaitEvent waits for an event that match accepts.
func (p *Proc) WaitEvent(t testing.TB, timeout time.Duration, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range p.Events() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching event within %v; events:\n%s", timeout, p.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Metrics scrapes /metrics.
func (p *Proc) Metrics(t testing.TB) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// CA is a test certificate authority for origins.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	Pool *x509.CertPool
	PEM  []byte
}

func NewCA(t testing.TB) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egress e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, Pool: pool, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf issues a certificate for names.
func (ca *CA) Leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Origin is a TLS (or plain) HTTP server on loopback that counts the
// connections it accepts.
type Origin struct {
	Addr  string
	Port  int
	Conns atomic.Int64
	srv   *http.Server
}

// NewOrigin starts an origin; with ca it serves TLS for names. The handler
// answers "hello from <Host>" unless h is given.
func NewOrigin(t testing.TB, ca *CA, h http.Handler, names ...string) *Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &Origin{Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s %s", r.Host, r.URL.Path)
		})
	}
	o.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				o.Conns.Add(1)
			}
		}}
	if ca != nil {
		o.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}}
		go o.srv.ServeTLS(ln, "", "")
	} else {
		go o.srv.Serve(ln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		o.srv.Shutdown(ctx)
		o.srv.Close()
	})
	return o
}

// RawOrigin accepts TCP connections and hands each to fn.
func RawOrigin(t testing.TB, fn func(net.Conn)) (addr string, port int, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go fn(c)
		}
	}()
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port, conns
}

// Connect opens a CONNECT tunnel through the proxy from src (a loopback
// address such as 127.0.0.2, standing in for a network segment) and returns
// the connection after a 200, or the status code.
func Connect(t testing.TB, proxyAddr, src, target string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c := DialFrom(t, src, proxyAddr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	c.SetReadDeadline(time.Time{})
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		c.Close()
		return nil, nil, resp.StatusCode
	}
	return &bufConn{Conn: c, r: br}, br, 200
}

// bufConn reads through the reader that parsed the CONNECT response.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// DialFrom connects from a given loopback source address.
func DialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// HTTPSGet does a TLS handshake with sni over c and a GET, returning the body.
func HTTPSGet(c net.Conn, sni string, pool *x509.CertPool, path string) (string, error) {
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: pool})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
