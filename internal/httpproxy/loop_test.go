package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// Unit tests of the HTTP loop on in-memory connections: no binary, no
// socket. Clients connect through a memListener, origins are the far ends of
// the pairs upstream.Dialer.DialConn returns, DNS is a stub. Each request's
// outcome must give exactly one SIEM event with the right fields and
// exactly one increment of egress_decisions_total.

// loopConfig: %s takes extra blocks (limits, tls), then the allowed domains.
// allow_private lists 127.0.0.1 only, so private.test (127.0.0.9) is a
// refused destination.
const loopConfig = `
%s
upstream {
  allow_private = ["127.0.0.1/32"]
  hosts = {
    "allowed.test" = "127.0.0.1"
    "other.test"   = "127.0.0.1"
    "banned.test"  = "127.0.0.1"
    "private.test" = "127.0.0.9"
  }
}
segment "lan" {
  sources = ["127.0.0.0/8"]
  default = "deny"
  rule "ok" {
    action  = "allow"
    domains = [%s]
  }
  rule "ban" {
    action  = "deny"
    domains = ["banned.test"]
  }
}
`

const loopAllowed = `"allowed.test", "other.test", "private.test", "nxdomain.test"`

func loadLoopConfig(t *testing.T, dir, extra, allowed string) *rules.Config {
	t.Helper()
	p := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(loopConfig, extra, allowed)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return cfg
}

type memSink struct {
	mu  sync.Mutex
	evs []*audit.Event
}

func (s *memSink) Log(e *audit.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

func (s *memSink) all() []*audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*audit.Event(nil), s.evs...)
}

type stubResolver struct{ calls atomic.Int32 }

func (r *stubResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.calls.Add(1)
	return nil, errors.New("no such host (stub)")
}

// originReq is what an in-memory origin received.
type originReq struct {
	method, host, uri string
	header            http.Header
}

// loop is one HTTP Server on a memListener.
type loop struct {
	t     *testing.T
	dir   string
	store *active.Store
	track *conntrack.Tracker
	m     *metrics.Metrics
	sink  *memSink
	dns   *stubResolver
	s     *Server
	ln    *memListener

	refuse atomic.Bool // dials fail
	dials  atomic.Int32
	mu     sync.Mutex
	dialed []netip.AddrPort // every address dialed
	// raw, when set, takes each dialed origin end instead of the HTTP origin.
	raw  chan *memConn
	reqs chan originReq // requests the HTTP origin served
}

func newLoop(t *testing.T, mode Mode, extra string) *loop {
	t.Helper()
	l := &loop{t: t, dir: t.TempDir(), sink: &memSink{}, dns: &stubResolver{}, ln: newMemListener(), reqs: make(chan originReq, 16)}
	cfg := loadLoopConfig(t, l.dir, extra, loopAllowed)
	l.m = metrics.New(prometheus.NewRegistry())
	l.store = active.NewStore(cfg)
	l.hook(l.store.Load())
	l.track = conntrack.New(l.store.Config, l.m, nil)
	rec := outcome.NewRecorder(l.sink, l.m)
	l.s = &Server{Mode: mode, Port: 80, Active: l.store, Track: l.track, Record: rec, Metrics: l.m,
		TLS: &tlsproxy.Proxy{Active: l.store, Record: rec, Metrics: l.m}}
	served := make(chan error, 1)
	go func() { served <- l.s.Serve(l.ln) }()
	t.Cleanup(func() {
		l.ln.Close()
		l.track.CloseAll()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
		waited := make(chan struct{})
		go func() { l.s.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Error("connection handlers still running")
		}
	})
	return l
}

// hook makes st's dialer in-memory; called before any request can use st.
func (l *loop) hook(st *active.State) {
	st.Dialer.Resolver = l.dns
	st.Dialer.DialConn = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		l.dials.Add(1)
		l.mu.Lock()
		l.dialed = append(l.dialed, addr)
		l.mu.Unlock()
		if l.refuse.Load() {
			return nil, errors.New("connection refused (stub)")
		}
		near, far := memPair(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:50000")), net.TCPAddrFromAddrPort(addr))
		l.t.Cleanup(func() { near.Close(); far.Close() })
		if l.raw != nil {
			l.raw <- far
		} else {
			go l.serveOrigin(far)
		}
		return near, nil
	}
}

// serveOrigin answers every request on c with 200 "ok".
func (l *loop) serveOrigin(c *memConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		l.reqs <- originReq{method: req.Method, host: req.Host, uri: req.RequestURI, header: req.Header}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func (l *loop) publish(extra, allowed string) int {
	cfg := loadLoopConfig(l.t, l.dir, extra, allowed)
	l.hook(l.store.Publish(cfg)) // nothing dials while this runs
	return l.track.Reloaded(cfg)
}

// client is one client connection.
type client struct {
	t  *testing.T
	c  *memConn
	br *bufio.Reader
}

func (l *loop) connect(src string) *client {
	l.t.Helper()
	c, err := l.ln.dial(netip.MustParseAddrPort(src))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: l.t, c: c, br: bufio.NewReader(c)}
}

// send writes raw without waiting for the proxy to read it all.
func (cl *client) send(raw string) {
	go cl.c.Write([]byte(raw))
}

// do sends raw and reads the response and its body (not for a CONNECT's
// 200, whose body is the tunnel).
func (cl *client) do(raw string) (*http.Response, string) {
	cl.t.Helper()
	cl.send(raw)
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: method})
	if err != nil {
		cl.t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cl.t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// closed asserts that the proxy closes the connection (bounded).
func (cl *client) closed() {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, cl.br); err != nil {
		cl.t.Fatalf("connection not closed by the proxy: %v", err)
	}
}

// done closes every client and waits until the proxy has let go of every
// connection; then no further event can come. It returns the events.
func (l *loop) done(cls ...*client) []*audit.Event {
	l.t.Helper()
	for _, cl := range cls {
		cl.c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.track.Open() != 0 || l.track.Connections() != 0 {
		if time.Now().After(deadline) {
			l.t.Fatalf("%d connections still tracked, %d admitted", l.track.Open(), l.track.Connections())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return l.sink.all()
}

// one returns the only event, failing otherwise.
func (l *loop) one(evs []*audit.Event) *audit.Event {
	l.t.Helper()
	if len(evs) != 1 {
		for _, e := range evs {
			l.t.Logf("event: %+v", *e)
		}
		l.t.Fatalf("%d events, want exactly 1", len(evs))
	}
	return evs[0]
}

// decided asserts egress_decisions_total's non-zero series: exactly want
// (key listener/segment/action/reason/rule → count).
func (l *loop) decided(want map[string]float64) {
	l.t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { l.m.Decisions.Collect(ch); close(ch) }()
	got := map[string]float64{}
	for pm := range ch {
		var d dto.Metric
		if err := pm.Write(&d); err != nil {
			l.t.Fatal(err)
		}
		lv := map[string]string{}
		for _, lp := range d.GetLabel() {
			lv[lp.GetName()] = lp.GetValue()
		}
		if v := d.GetCounter().GetValue(); v != 0 {
			got[strings.Join([]string{lv["listener"], lv["segment"], lv["action"], lv["reason"], lv["rule"]}, "/")] += v
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		l.t.Fatalf("egress_decisions_total = %v, want %v", got, want)
	}
}

// ev is what an event must say (every field listed is checked, empty ones
// too; err is a substring, "" meaning none).
type ev struct {
	listener, action, reason, rule string
	domain, ip                     string
	port                           int
	method, urlDomain, urlPath     string
	status                         int
	sni                            string
	err                            string
}

func (l *loop) check(e *audit.Event, w ev) {
	l.t.Helper()
	bad := func(field string, got, want any) { l.t.Errorf("%s = %v, want %v", field, got, want) }
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"egress.listener", e.Listener, w.listener}, {"event.action", e.Action, w.action}, {"event.reason", e.Reason, w.reason},
		{"rule.name", e.Rule, w.rule}, {"egress.segment", e.Segment, "lan"}, {"destination.domain", e.DestDomain, w.domain},
		{"destination.ip", e.DestIP, w.ip}, {"destination.port", e.DestPort, w.port}, {"http.request.method", e.Method, w.method},
		{"url.domain", e.URLDomain, w.urlDomain}, {"url.path", e.URLPath, w.urlPath}, {"http.response.status_code", e.Status, w.status},
		{"tls.client.server_name", e.SNI, w.sni}, {"source.ip", e.SourceIP, "127.0.0.2"},
		{"egress.config_version", e.ConfigVersion, l.store.Config().Version},
	} {
		if f.got != f.want {
			bad(f.name, f.got, f.want)
		}
	}
	if w.err == "" && e.Error != "" || !strings.Contains(e.Error, w.err) {
		bad("error.message", e.Error, w.err)
	}
	if e.ID == "" || e.SourcePort == 0 {
		l.t.Errorf("event.id %q, source.port %d", e.ID, e.SourcePort)
	}
}

// proxyStatusIs asserts the response's status and Proxy-Status error type.
func proxyStatusIs(t *testing.T, resp *http.Response, status int, errType string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d", resp.StatusCode, status)
	}
	if ps := resp.Header.Get("Proxy-Status"); !strings.HasPrefix(ps, "egress; error="+errType) {
		t.Errorf("Proxy-Status %q, want error=%s", ps, errType)
	}
}

const src = "127.0.0.2:40000"

func get(url, extra string) string {
	host := strings.TrimPrefix(url, "http://")
	host, _, _ = strings.Cut(host, "/")
	return "GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"
}

func TestLoopPlainAllow(t *testing.T) {
	l := newLoop(t, Explicit, "")
	cl := l.connect(src)
	resp, body := cl.do(get("http://allowed.test/a/b?q=1", "Proxy-Authorization: Basic eA==\r\n"))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	r := <-l.reqs
	if r.method != "GET" || r.host != "allowed.test" || r.uri != "/a/b?q=1" || r.header.Get("Proxy-Authorization") != "" {
		t.Errorf("origin got %+v", r)
	}
	e := l.one(l.done(cl))
	l.check(e, ev{listener: "proxy", action: "allow", reason: "rule", rule: "ok", domain: "allowed.test", ip: "127.0.0.1", port: 80,
		method: "GET", urlDomain: "allowed.test", urlPath: "/a/b", status: 200})
	if e.SourceBytes == 0 || e.DestBytes == 0 || e.Duration <= 0 {
		t.Errorf("bytes %d/%d, duration %v", e.SourceBytes, e.DestBytes, e.Duration)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1})
	if l.dials.Load() != 1 {
		t.Errorf("%d dials", l.dials.Load())
	}
}

// Keep-alive: each request is decided on its own, with its own event.
func TestLoopKeepAliveTwoRequests(t *testing.T) {
	l := newLoop(t, Explicit, "")
	cl := l.connect(src)
	for _, path := range []string{"/one", "/two"} {
		if resp, body := cl.do(get("http://allowed.test"+path, "")); resp.StatusCode != 200 || body != "ok" || resp.Close {
			t.Fatalf("%s: %d %q close=%v", path, resp.StatusCode, body, resp.Close)
		}
	}
	resp, _ := cl.do(get("http://banned.test/three", ""))
	proxyStatusIs(t, resp, 403, statusDenied)
	evs := l.done(cl)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for i, path := range []string{"/one", "/two"} {
		l.check(evs[i], ev{listener: "proxy", action: "allow", reason: "rule", rule: "ok", domain: "allowed.test", ip: "127.0.0.1", port: 80,
			method: "GET", urlDomain: "allowed.test", urlPath: path, status: 200})
	}
	l.check(evs[2], ev{listener: "proxy", action: "deny", reason: "rule", rule: "ban", domain: "banned.test", port: 80,
		method: "GET", urlDomain: "banned.test", urlPath: "/three", status: 403})
	if evs[0].ID == evs[1].ID {
		t.Error("two requests, one event id")
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 2, "proxy/lan/deny/rule/ban": 1})
}

func TestLoopRefusals(t *testing.T) {
	for _, tt := range []struct {
		name    string
		req     string
		refuse  bool // dials fail
		status  int
		errType string
		details string // Proxy-Status details, if any
		closes  bool   // the proxy closes the connection after the answer
		ev      ev
		metric  string
	}{
		{name: "deny by host", req: get("http://banned.test/x", ""), status: 403, errType: statusDenied, details: `"rule ban"`,
			ev:     ev{action: "deny", reason: "rule", rule: "ban", domain: "banned.test", port: 80, method: "GET", urlDomain: "banned.test", urlPath: "/x", status: 403},
			metric: "proxy/lan/deny/rule/ban"},
		{name: "deny by default", req: get("http://unknown.test/", ""), status: 403, errType: statusDenied, details: `"default"`,
			ev:     ev{action: "deny", reason: "default", domain: "unknown.test", port: 80, method: "GET", urlDomain: "unknown.test", urlPath: "/", status: 403},
			metric: "proxy/lan/deny/default/"},
		{name: "Host and URL differ", req: "GET http://allowed.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n", status: 403, errType: statusDenied,
			details: `"sni_mismatch"`,
			ev:      ev{action: "deny", reason: "sni_mismatch", domain: "allowed.test", port: 80, method: "GET", urlDomain: "allowed.test", urlPath: "/", status: 403},
			metric:  "proxy/lan/deny/sni_mismatch/"},
		{name: "private destination", req: get("http://private.test/", ""), status: 403, errType: statusIPForbidden, closes: true,
			ev: ev{action: "deny", reason: "private_destination", domain: "private.test", port: 80, method: "GET", urlDomain: "private.test", urlPath: "/", status: 403,
				err: "destination address prohibited: private.test is 127.0.0.9"},
			metric: "proxy/lan/deny/private_destination/"},
		{name: "DNS error", req: get("http://nxdomain.test/", ""), status: 502, errType: statusDNS, closes: true,
			ev: ev{action: "allow", reason: "dns_error", rule: "ok", domain: "nxdomain.test", port: 80, method: "GET", urlDomain: "nxdomain.test", urlPath: "/", status: 502,
				err: "no such host (stub)"},
			metric: "proxy/lan/allow/rule/ok"},
		{name: "dial failure", req: get("http://allowed.test/", ""), refuse: true, status: 502, errType: statusUnavailable, closes: true,
			ev: ev{action: "allow", reason: "destination_unavailable", rule: "ok", domain: "allowed.test", ip: "127.0.0.1", port: 80, method: "GET", urlDomain: "allowed.test", urlPath: "/", status: 502,
				err: "destination unavailable: connection refused (stub)"},
			metric: "proxy/lan/allow/rule/ok"},
		{name: "GET with a body", req: "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n\r\nhello", status: 400,
			errType: statusRequestError, closes: true,
			ev: ev{action: "deny", reason: "invalid_request", domain: "allowed.test", port: 80, method: "GET", urlDomain: "allowed.test", urlPath: "/", status: 400,
				err: "a GET request with a body"},
			metric: "proxy/lan/deny/invalid_request/"},
		{name: "CONNECT denied", req: "CONNECT banned.test:443 HTTP/1.1\r\nHost: banned.test:443\r\n\r\n", status: 403, errType: statusDenied, details: `"rule ban"`, closes: true,
			ev:     ev{action: "deny", reason: "rule", rule: "ban", domain: "banned.test", port: 443, method: "CONNECT", status: 403},
			metric: "proxy/lan/deny/rule/ban"},
		{name: "CONNECT to a private destination", req: "CONNECT private.test:443 HTTP/1.1\r\nHost: private.test:443\r\n\r\n", status: 403, errType: statusIPForbidden, closes: true,
			ev: ev{action: "deny", reason: "private_destination", domain: "private.test", port: 443, method: "CONNECT", status: 403,
				err: "destination address prohibited"},
			metric: "proxy/lan/deny/private_destination/"},
		{name: "CONNECT, DNS error", req: "CONNECT nxdomain.test:443 HTTP/1.1\r\nHost: nxdomain.test:443\r\n\r\n", status: 502, errType: statusDNS, closes: true,
			ev: ev{action: "allow", reason: "dns_error", rule: "ok", domain: "nxdomain.test", port: 443, method: "CONNECT", status: 502,
				err: "no such host (stub)"},
			metric: "proxy/lan/allow/rule/ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoop(t, Explicit, "")
			l.refuse.Store(tt.refuse)
			cl := l.connect(src)
			resp, _ := cl.do(tt.req)
			proxyStatusIs(t, resp, tt.status, tt.errType)
			if tt.details != "" && !strings.HasSuffix(resp.Header.Get("Proxy-Status"), "; details="+tt.details) {
				t.Errorf("Proxy-Status %q, want details=%s", resp.Header.Get("Proxy-Status"), tt.details)
			}
			if tt.closes {
				if !resp.Close {
					t.Error("no Connection: close")
				}
				cl.closed()
			}
			e := l.one(l.done(cl))
			w := tt.ev
			w.listener = "proxy"
			l.check(e, w)
			l.decided(map[string]float64{tt.metric: 1})
			if want := int32(0); tt.refuse {
				if l.dials.Load() != 1 {
					t.Errorf("%d dials", l.dials.Load())
				}
			} else if l.dials.Load() != want {
				t.Errorf("%d dials for a request that must not reach a destination", l.dials.Load())
			}
		})
	}
}

// per_source = 1: a second connection from the same client is answered 503
// with one deny event (connection_limit); the first goes on.
func TestLoopConnectionLimit(t *testing.T) {
	for _, mode := range []Mode{Explicit, Transparent} {
		t.Run(fmt.Sprint("mode=", mode), func(t *testing.T) {
			l := newLoop(t, mode, "limits {\n  per_source = 1\n}")
			listener := l.s.listener()
			req := get("http://allowed.test/", "")
			if mode == Transparent {
				req = "GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
			}
			first := l.connect(src)
			if resp, _ := first.do(req); resp.StatusCode != 200 { // admitted, and idle now
				t.Fatalf("first: %d", resp.StatusCode)
			}
			second := l.connect("127.0.0.2:40001")
			if mode == Explicit {
				resp, body := second.do(req)
				proxyStatusIs(t, resp, 503, statusLimit)
				if !strings.Contains(resp.Header.Get("Proxy-Status"), `details="per_source"`) || resp.Header.Get("Retry-After") == "" || !resp.Close {
					t.Errorf("503 header %v", resp.Header)
				}
				if !strings.Contains(body, "per_source") {
					t.Errorf("body %q", body)
				}
			}
			second.closed() // transparent: closed without a word
			// The first connection still works.
			if resp, _ := first.do(req); resp.StatusCode != 200 {
				t.Fatalf("first, again: %d", resp.StatusCode)
			}
			evs := l.done(first, second)
			var limit []*audit.Event
			for _, e := range evs {
				if e.Reason == string(rules.ReasonLimit) {
					limit = append(limit, e)
				}
			}
			if len(evs) != 3 || len(limit) != 1 {
				t.Fatalf("%d events, %d for the limit; want 3 and 1", len(evs), len(limit))
			}
			e := limit[0]
			l.check(e, ev{listener: listener, action: "deny", reason: "connection_limit", status: 503, err: "limit: per_source"})
			if e.SourcePort != 40001 {
				t.Errorf("source.port %d", e.SourcePort)
			}
			l.decided(map[string]float64{listener + "/lan/allow/rule/ok": 2, listener + "/lan/deny/connection_limit/": 1})
			if n := testutil.ToFloat64(l.m.ConnectionsRejected.WithLabelValues(listener, metrics.RejectPerSource)); n != 1 {
				t.Errorf("connections rejected %v", n)
			}
		})
	}
}

// The transparent HTTP listener: the Host header is the destination, dialed
// on transparent.http_port; CONNECT is not spoken there.
func TestLoopTransparent(t *testing.T) {
	l := newLoop(t, Transparent, "")
	cl := l.connect(src)
	resp, body := cl.do("GET /p HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// The Host header goes on as the client sent it; the port dialed is
	// transparent.http_port.
	if r := <-l.reqs; r.host != "allowed.test:8080" || r.uri != "/p" {
		t.Errorf("origin got %+v", r)
	}
	l.mu.Lock()
	if fmt.Sprint(l.dialed) != "[127.0.0.1:80]" {
		t.Errorf("dialed %v, want 127.0.0.1:80", l.dialed)
	}
	l.mu.Unlock()
	resp, _ = cl.do("GET /q HTTP/1.1\r\nHost: banned.test\r\n\r\n")
	proxyStatusIs(t, resp, 403, statusDenied)
	resp, _ = cl.do("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	proxyStatusIs(t, resp, 400, statusBadRequest)
	cl.closed()
	evs := l.done(cl)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2 (the CONNECT is a protocol error, not a decision)", len(evs))
	}
	l.check(evs[0], ev{listener: "transparent_http", action: "allow", reason: "rule", rule: "ok", domain: "allowed.test", ip: "127.0.0.1", port: 80,
		method: "GET", urlDomain: "allowed.test", urlPath: "/p", status: 200})
	l.check(evs[1], ev{listener: "transparent_http", action: "deny", reason: "rule", rule: "ban", domain: "banned.test", port: 80,
		method: "GET", urlDomain: "banned.test", urlPath: "/q", status: 403})
	l.decided(map[string]float64{"transparent_http/lan/allow/rule/ok": 1, "transparent_http/lan/deny/rule/ban": 1})
}

// goHello is the ClientHello crypto/tls sends for serverName.
func goHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatalf("capturing hello: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatalf("capturing hello: %v", err)
	}
	return append(hdr, body...)
}

// connectTunnel sends a CONNECT with the hello right behind it (before the
// 200, SPEC §5.3), and returns the origin's end once the hello has reached it.
func (l *loop) connectTunnel(cl *client, target, sni string) *memConn {
	l.t.Helper()
	l.raw = make(chan *memConn, 1)
	hello := goHello(l.t, sni)
	cl.send("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n" + string(hello))
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		l.t.Fatalf("CONNECT: %v %v", resp, err)
	}
	var srv *memConn
	select {
	case srv = <-l.raw:
	case <-time.After(10 * time.Second):
		l.t.Fatal("nothing dialed")
	}
	srv.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(srv, got); err != nil || string(got) != string(hello) {
		l.t.Fatalf("origin: hello not replayed whole (%v)", err)
	}
	return srv
}

// CONNECT allowed, then the hello: the TLS flow takes over, dials, replays,
// and the tunnel's one event is written when it ends.
func TestLoopConnectAllowed(t *testing.T) {
	l := newLoop(t, Explicit, "")
	cl := l.connect(src)
	srv := l.connectTunnel(cl, "allowed.test:443", "allowed.test")
	srv.Write([]byte("pong"))
	srv.CloseWrite()
	got, err := io.ReadAll(cl.br)
	if err != nil || string(got) != "pong" {
		t.Fatalf("client got %q, %v", got, err)
	}
	e := l.one(l.done(cl))
	l.check(e, ev{listener: "proxy", action: "allow", reason: "rule", rule: "ok", domain: "allowed.test", ip: "127.0.0.1", port: 443,
		method: "CONNECT", status: 200, sni: "allowed.test"})
	if e.JA4 == "" || e.ECH == nil || e.DestBytes != 4 {
		t.Errorf("ja4 %q, ech %v, destination.bytes %d", e.JA4, e.ECH, e.DestBytes)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1})
	if l.dns.calls.Load() != 0 {
		t.Errorf("%d DNS lookups", l.dns.calls.Load())
	}
}

// CONNECT allowed on its host, denied on its SNI: one event, for the SNI
// deny (the CONNECT's allow is not a second decision).
func TestLoopConnectDeniedBySNI(t *testing.T) {
	l := newLoop(t, Explicit, `tls { sni_mismatch = "allow" }`)
	l.raw = make(chan *memConn, 1)
	cl := l.connect(src)
	cl.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n" + string(goHello(t, "banned.test")))
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	got, err := io.ReadAll(cl.br)
	if err != nil || string(got) != "\x15\x03\x03\x00\x02\x02\x31" {
		t.Fatalf("client got %v, %v; want the access_denied alert", []byte(got), err)
	}
	e := l.one(l.done(cl))
	l.check(e, ev{listener: "proxy", action: "deny", reason: "rule", rule: "ban", domain: "allowed.test", ip: "127.0.0.1", port: 443,
		method: "CONNECT", status: 200, sni: "banned.test"})
	l.decided(map[string]float64{"proxy/lan/deny/rule/ban": 1})
	if l.dials.Load() != 0 {
		t.Errorf("%d dials", l.dials.Load())
	}
}

// A reload that denies a running CONNECT tunnel closes it: one event, a deny
// with reason config_reload; the connection's slot and registration are let
// go.
func TestLoopConnectReloadCut(t *testing.T) {
	l := newLoop(t, Explicit, "")
	cl := l.connect(src)
	srv := l.connectTunnel(cl, "allowed.test:443", "allowed.test")
	if n := l.publish("", `"other.test"`); n != 1 {
		t.Fatalf("reload closed %d", n)
	}
	cl.closed()
	if _, err := io.ReadAll(srv); err != nil {
		t.Fatalf("origin not closed: %v", err)
	}
	e := l.one(l.done())
	if e.Action != "deny" || e.Reason != "config_reload" || e.Error != "closed: config_reload" || e.Method != "CONNECT" || e.SNI != "allowed.test" {
		t.Errorf("event %+v", *e)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1}) // counted once, when it was decided
}

// A shutdown while a CONNECT's hello is pending: one event, reason shutdown.
func TestLoopConnectShutdown(t *testing.T) {
	l := newLoop(t, Explicit, `tls { hello_timeout = "30s" }`)
	cl := l.connect(src)
	cl.send("CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	// The 200's body is the tunnel: only its head is read.
	if resp, err := http.ReadResponse(cl.br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if n := l.track.CloseAll(); n != 1 {
		t.Fatalf("CloseAll closed %d", n)
	}
	cl.closed()
	e := l.one(l.done(cl))
	l.check(e, ev{listener: "proxy", action: "deny", reason: "shutdown", domain: "allowed.test", ip: "127.0.0.1", port: 443,
		method: "CONNECT", status: 200, err: "closed: shutdown"})
	l.decided(map[string]float64{"proxy/lan/deny/shutdown/": 1})
}

// A reload that denies a plain-HTTP request's destination while the request
// waits for its response head: the request is cut, and its one event says
// so (a deny, config_reload), not that the destination failed.
//
// Known defect (found by this test): relay's error path does not look at
// ClosedBy, so the event says destination_unavailable and the cut is counted
// as an upstream error. The fix (checking ClosedBy before the 502) is in the
// report of branch h/unit; remove the skip with it.
func TestLoopPlainReloadCut(t *testing.T) {
	l := newLoop(t, Explicit, "")
	l.raw = make(chan *memConn, 1)
	cl := l.connect(src)
	cl.send(get("http://allowed.test/slow", ""))
	var srv *memConn
	select {
	case srv = <-l.raw:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	srv.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := http.ReadRequest(bufio.NewReader(srv)); err != nil { // read, never answered
		t.Fatal(err)
	}
	if n := l.publish("", `"other.test"`); n != 1 {
		t.Fatalf("reload closed %d", n)
	}
	cl.closed()
	e := l.one(l.done())
	if e.Action != "deny" || e.Reason != "config_reload" || e.Error != "closed: config_reload" {
		t.Errorf("event: action %q, reason %q, error %q; want deny, config_reload, closed: config_reload", e.Action, e.Reason, e.Error)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1})
	if n := testutil.ToFloat64(l.m.UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable)); n != 0 {
		t.Errorf("a cut counted as an upstream error (%v)", n)
	}
}

// A reload that denies a plain-HTTP request's destination while its
// upstream connection is being dialed: the reload closes the client
// connection, and the request must not reach the destination afterwards.
//
// Known defect (found by this test): the registry's closer closes the
// client's origin only if it is already stored; one being dialed is stored
// after, and the request is then written to it — the SIEM event says
// config_reload while the origin got the request. Remove the skip with the
// fix (see the report of branch h/unit).
func TestLoopReloadDuringPlainDial(t *testing.T) {
	l := newLoop(t, Explicit, "")
	l.raw = make(chan *memConn, 1)
	st := l.store.Load()
	dial := st.Dialer.DialConn
	closed := make(chan int, 1)
	st.Dialer.DialConn = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		closed <- l.publish("", `"other.test"`) // the reload lands during the dial
		return dial(ctx, addr)
	}
	cl := l.connect(src)
	cl.send(get("http://allowed.test/after-reload", ""))
	var srv *memConn
	select {
	case srv = <-l.raw:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	if n := <-closed; n != 1 {
		t.Fatalf("reload closed %d", n)
	}
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	if req, err := http.ReadRequest(bufio.NewReader(srv)); err == nil {
		t.Errorf("the destination received %s %s after the reload that denies it", req.Method, req.URL)
		go io.WriteString(srv, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
	cl.closed()
	e := l.one(l.done())
	if e.Action != "deny" || e.Reason != "config_reload" {
		t.Errorf("event: action %q, reason %q", e.Action, e.Reason)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1})
}

// idleEntries returns a channel that gets a value each time a connection
// reaches the point where it goes idle between requests (testHookIdle), and
// runs also (if set) there, on the connection's goroutine.
func idleEntries(t *testing.T, also func()) <-chan struct{} {
	ch := make(chan struct{}, 16)
	hook := func(*conn) {
		if also != nil {
			also()
		}
		ch <- struct{}{}
	}
	testHookIdle.Store(&hook)
	t.Cleanup(func() { testHookIdle.Store(nil) })
	return ch
}

func waitIdleEntry(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not go idle")
	}
}

// A shutdown closes an idle keep-alive connection at once; it carries no
// decision, so it writes no event of its own.
func TestLoopShutdownClosesIdle(t *testing.T) {
	l := newLoop(t, Explicit, `limits { idle_timeout = "60s" }`)
	idle := idleEntries(t, nil)
	cl := l.connect(src)
	waitIdleEntry(t, idle) // before the first request
	if resp, _ := cl.do(get("http://allowed.test/", "")); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	waitIdleEntry(t, idle)
	// The hook runs just before the connection marks itself idle and
	// checks for a drain: within moments, CloseIdle either finds it idle
	// and closes it, or its first call (which begins the drain) came
	// first and the connection closes itself at the check. A bounded poll.
	deadline := time.Now().Add(10 * time.Second)
	for l.track.CloseIdle() != 1 && l.track.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection never idle")
		}
		time.Sleep(time.Millisecond)
	}
	cl.closed()
	e := l.one(l.done())
	if e.Action != "allow" || e.Status != 200 || e.Error != "" {
		t.Errorf("event %+v", *e)
	}
	l.decided(map[string]float64{"proxy/lan/allow/rule/ok": 1})
}

// A shutdown that begins just as a keep-alive connection goes idle (after
// the loop's drain check, before it marks itself idle) must still close it
// promptly, not after idle_timeout.
//
// Known defect (found by this test): loop checks Draining before SetIdle,
// and CloseIdle closes only connections already marked idle, so one in
// between waits for idle_timeout (at most until the grace period's
// CloseAll). Marking idle first and then checking Draining closes the gap.
func TestLoopShutdownAsConnectionGoesIdle(t *testing.T) {
	l := newLoop(t, Explicit, `limits { idle_timeout = "60s" }`)
	var entries atomic.Int32
	idle := idleEntries(t, func() {
		if entries.Add(1) == 2 { // after the first request: shut down right here
			l.track.CloseIdle()
		}
	})
	cl := l.connect(src)
	waitIdleEntry(t, idle)
	if resp, _ := cl.do(get("http://allowed.test/", "")); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	waitIdleEntry(t, idle)
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, cl.br); err != nil {
		t.Fatalf("not closed within 5s of the shutdown (idle_timeout is 60s): %v", err)
	}
	l.one(l.done())
}

// TestLoopHTTPVersions: a request line in another major version than 1
// (HTTP/2.0, the h2 preface, HTTP/0.9) cannot be carried by HTTP/1
// framing: 505, the connection closed, no dial and no decision. An
// HTTP/1.2 client is answered HTTP/1.1 (the version egress speaks; it was
// answered in its own), an HTTP/1.0 client HTTP/1.0.
func TestLoopHTTPVersions(t *testing.T) {
	for _, req := range []string{
		"GET http://allowed.test/ HTTP/2.0\r\nHost: allowed.test\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET http://allowed.test/ HTTP/0.9\r\nHost: allowed.test\r\n\r\n",
		"CONNECT allowed.test:443 HTTP/2.0\r\nHost: allowed.test:443\r\n\r\n",
		"GET http://allowed.test/ HTTP/3.1\r\nHost: allowed.test\r\n\r\n",
	} {
		t.Run(strings.Fields(req)[2], func(t *testing.T) {
			l := newLoop(t, Explicit, "")
			cl := l.connect(src)
			resp, _ := cl.do(req)
			proxyStatusIs(t, resp, http.StatusHTTPVersionNotSupported, statusBadRequest)
			if resp.Proto != "HTTP/1.1" {
				t.Errorf("answered in %s", resp.Proto)
			}
			cl.closed()
			if evs := l.done(cl); len(evs) != 0 {
				t.Errorf("%d events for a request that is no decision", len(evs))
			}
			if l.dials.Load() != 0 {
				t.Errorf("%d dials", l.dials.Load())
			}
		})
	}
	for _, v := range []struct{ req, resp string }{{"HTTP/1.2", "HTTP/1.1"}, {"HTTP/1.0", "HTTP/1.0"}, {"HTTP/1.1", "HTTP/1.1"}} {
		t.Run(v.req+" answered", func(t *testing.T) {
			l := newLoop(t, Explicit, "")
			cl := l.connect(src)
			resp, _ := cl.do("GET http://allowed.test/ " + v.req + "\r\nHost: allowed.test\r\n\r\n")
			if resp.StatusCode != 200 || resp.Proto != v.resp {
				t.Errorf("%s: %d in %s, want 200 in %s", v.req, resp.StatusCode, resp.Proto, v.resp)
			}
			l.done(cl)
		})
	}
}
