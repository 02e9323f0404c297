package tlsproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
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
	"github.com/egress-proxy/egress/internal/sni"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// Unit tests of the TLS flow on in-memory connections: no binary, no socket.
// The client is one end of a memConn pair, the origin (when one is dialed)
// the other end of a pair returned by upstream.Dialer.DialConn, and DNS a
// stub. Each outcome must give exactly one SIEM event with the right fields
// and exactly one increment of egress_decisions_total.

// flowConfig is the base configuration; %s takes extra blocks (tls, limits).
// allow_private lists 127.0.0.1 only, so private.test (127.0.0.9) is a
// refused destination; nothing is ever dialed over the network anyway.
const flowConfig = `
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

const okDomains = `"allowed.test", "other.test", "private.test", "nxdomain.test", "www.example.com"`

var clientSrc = netip.MustParseAddrPort("127.0.0.2:40000")

func loadFlowConfig(t *testing.T, dir, extra, allowed string) *rules.Config {
	t.Helper()
	p := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(flowConfig, extra, allowed)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := rules.Load(p, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	return cfg
}

// sink collects the events.
type sink struct {
	mu  sync.Mutex
	evs []*audit.Event
}

func (s *sink) Log(e *audit.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, e)
	s.mu.Unlock()
}

func (s *sink) all() []*audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*audit.Event(nil), s.evs...)
}

// failResolver is the DNS: every lookup fails.
type failResolver struct{ calls atomic.Int32 }

func (r *failResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.calls.Add(1)
	return nil, errors.New("no such host (stub)")
}

// harness is one Proxy with its store, tracker, metrics and events.
type harness struct {
	t     *testing.T
	dir   string
	store *active.Store
	track *conntrack.Tracker
	m     *metrics.Metrics
	sink  *sink
	p     *Proxy
	dns   *failResolver

	// dial is what the dialer does; nil refuses. dials counts attempts.
	dial  func(addr netip.AddrPort) (net.Conn, error)
	dials atomic.Int32
}

func newHarness(t *testing.T, extra string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), sink: &sink{}, dns: &failResolver{}}
	cfg := loadFlowConfig(t, h.dir, extra, okDomains)
	h.m = metrics.New(prometheus.NewRegistry())
	h.store = active.NewStore(cfg)
	h.hook(h.store.Load())
	h.track = conntrack.New(h.store.Config, h.m, nil)
	h.p = &Proxy{Active: h.store, Record: outcome.NewRecorder(h.sink, h.m), Metrics: h.m}
	t.Cleanup(func() { h.track.CloseAll() })
	return h
}

// hook makes st's dialer in-memory: DNS fails, dials go to h.dial. Called
// before any flow can use st.
func (h *harness) hook(st *active.State) {
	st.Dialer.Resolver = h.dns
	st.Dialer.DialConn = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		h.dials.Add(1)
		if h.dial == nil {
			return nil, errors.New("connection refused (stub)")
		}
		return h.dial(addr)
	}
}

// publish makes a new configuration active and tells the tracker, as a
// reload does.
func (h *harness) publish(extra, allowed string) int {
	cfg := loadFlowConfig(h.t, h.dir, extra, allowed)
	h.hook(h.store.Publish(cfg)) // no flow dials while this runs
	return h.track.Reloaded(cfg)
}

// origin plays the destination: each dial gets a fresh pair, whose far end
// is sent on the returned channel.
func (h *harness) origin() <-chan *memConn {
	ch := make(chan *memConn, 4)
	h.dial = func(addr netip.AddrPort) (net.Conn, error) {
		near, far := memPair(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:50000")), net.TCPAddrFromAddrPort(addr))
		ch <- far
		h.t.Cleanup(func() { near.Close(); far.Close() })
		return near, nil
	}
	return ch
}

// flow is one flow under test: the client's end and the flow's end.
type testFlow struct {
	client *memConn
	done   chan struct{} // closed by Flow.Done
	conn   *conntrack.Conn
}

// transparent starts a transparent TLS flow.
func (h *harness) transparent() *testFlow {
	return h.start(func(f *Flow) {
		f.Listener = audit.ListenerTransparentHTTPS
		f.OrigDest = netip.MustParseAddrPort("127.0.0.1:443")
	})
}

// connect starts the TLS flow of a CONNECT to target:443 after its 200,
// decided and resolved as internal/httpproxy does.
func (h *harness) connect(target string) *testFlow {
	st := h.store.Load()
	outer := st.Config.DecideOuter(clientSrc.Addr(), target, 443)
	if outer.Decision.Action != rules.Allow {
		h.t.Fatalf("CONNECT %s denied: %+v", target, outer.Decision)
	}
	dest, err := st.Dialer.Resolve(context.Background(), outer.Name, outer.IP)
	if err != nil {
		h.t.Fatalf("CONNECT %s: %v", target, err)
	}
	return h.start(func(f *Flow) {
		f.Listener = audit.ListenerProxy
		f.Connect = &Connect{Outer: outer, State: st, Dest: dest}
	})
}

func (h *harness) start(set func(*Flow)) *testFlow {
	client, proxy := memPair(net.TCPAddrFromAddrPort(clientSrc), net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:3128")))
	fl := &testFlow{client: client, done: make(chan struct{})}
	fl.conn = h.track.Track("test", proxy)
	var once atomic.Bool
	f := &Flow{Client: proxy, Src: clientSrc, Start: time.Now(), Port: 443, Conn: fl.conn,
		Done: func() {
			if !once.CompareAndSwap(false, true) {
				h.t.Errorf("Done called twice")
				return
			}
			h.track.Untrack(fl.conn)
			close(fl.done)
		}}
	set(f)
	h.t.Cleanup(func() { client.Close(); proxy.Close() })
	go h.p.Serve(f)
	return fl
}

// send writes b from the client without waiting for the flow to read it
// (an in-memory write blocks until it is read).
func (fl *testFlow) send(b []byte) {
	go func() {
		fl.client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fl.client.Write(b)
	}()
}

// received reads what the proxy sends the client until it closes (bounded).
func (fl *testFlow) received(t *testing.T) []byte {
	t.Helper()
	fl.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(fl.client)
	if err != nil {
		t.Fatalf("client read: %v (after %q)", err, b)
	}
	return b
}

// wait waits (bounded) until the flow is over.
func (fl *testFlow) wait(t *testing.T) {
	t.Helper()
	select {
	case <-fl.done:
	case <-time.After(10 * time.Second):
		t.Fatal("flow not over after 10s")
	}
}

// event returns the one event written, failing if there is not exactly one.
func (h *harness) event() *audit.Event {
	h.t.Helper()
	evs := h.sink.all()
	if len(evs) != 1 {
		for _, e := range evs {
			h.t.Logf("event: %+v", *e)
		}
		h.t.Fatalf("%d events, want exactly 1", len(evs))
	}
	return evs[0]
}

// decisions returns egress_decisions_total's non-zero series, keyed
// listener/segment/action/reason/rule.
func decisions(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { m.Decisions.Collect(ch); close(ch) }()
	out := map[string]float64{}
	for pm := range ch {
		var d dto.Metric
		if err := pm.Write(&d); err != nil {
			t.Fatal(err)
		}
		lv := map[string]string{}
		for _, l := range d.GetLabel() {
			lv[l.GetName()] = l.GetValue()
		}
		if v := d.GetCounter().GetValue(); v != 0 {
			out[strings.Join([]string{lv["listener"], lv["segment"], lv["action"], lv["reason"], lv["rule"]}, "/")] += v
		}
	}
	return out
}

// oneDecision asserts that egress_decisions_total was incremented exactly
// once, on the series key.
func (h *harness) oneDecision(key string) {
	h.t.Helper()
	got := decisions(h.t, h.m)
	if len(got) != 1 || got[key] != 1 {
		h.t.Fatalf("egress_decisions_total = %v, want exactly {%s: 1}", got, key)
	}
}

// want is what an event must say; empty strings are checked too, except
// where noted.
type want struct {
	listener, action, reason, rule, segment string
	domain, ip, sni                         string
	ja4                                     bool   // a JA4 fingerprint is present
	ech                                     *bool  // nil: the event has no egress.tls.ech
	err                                     string // substring of error.message; "" means none
	method                                  string
	status                                  int
}

func (h *harness) check(e *audit.Event, w want) {
	h.t.Helper()
	cfg := h.store.Config()
	bad := func(field string, got, want any) { h.t.Errorf("%s = %v, want %v", field, got, want) }
	if e.Listener != w.listener {
		bad("egress.listener", e.Listener, w.listener)
	}
	if e.Action != w.action {
		bad("event.action", e.Action, w.action)
	}
	if e.Reason != w.reason {
		bad("event.reason", e.Reason, w.reason)
	}
	if e.Rule != w.rule {
		bad("rule.name", e.Rule, w.rule)
	}
	if e.Segment != w.segment {
		bad("egress.segment", e.Segment, w.segment)
	}
	if e.DestDomain != w.domain {
		bad("destination.domain", e.DestDomain, w.domain)
	}
	if e.DestIP != w.ip {
		bad("destination.ip", e.DestIP, w.ip)
	}
	if e.DestPort != 443 {
		bad("destination.port", e.DestPort, 443)
	}
	if e.SNI != w.sni {
		bad("tls.client.server_name", e.SNI, w.sni)
	}
	if (e.JA4 != "") != w.ja4 {
		bad("egress.tls.ja4", e.JA4, w.ja4)
	}
	if (e.ECH == nil) != (w.ech == nil) || e.ECH != nil && *e.ECH != *w.ech {
		bad("egress.tls.ech", e.ECH, w.ech)
	}
	if w.err == "" && e.Error != "" || !strings.Contains(e.Error, w.err) {
		bad("error.message", e.Error, w.err)
	}
	if e.Method != w.method {
		bad("http.request.method", e.Method, w.method)
	}
	if e.Status != w.status {
		bad("http.response.status_code", e.Status, w.status)
	}
	if e.SourceIP != "127.0.0.2" || e.SourcePort != 40000 {
		bad("source", fmt.Sprint(e.SourceIP, ":", e.SourcePort), clientSrc)
	}
	if e.ConfigVersion != cfg.Version || e.ID == "" || e.Duration <= 0 {
		h.t.Errorf("config_version %q (want %q), id %q, duration %v", e.ConfigVersion, cfg.Version, e.ID, e.Duration)
	}
}

func alert(desc uint8) []byte { return []byte{21, 3, 3, 0, 2, 2, desc} }

var (
	yes = func() *bool { b := true; return &b }()
	no  = func() *bool { b := false; return &b }()
)

// goHello is the ClientHello crypto/tls sends for serverName ("" sends no
// SNI), captured over an in-memory pipe.
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

// chromiumHello is a real Chromium hello: SNI www.example.com, ECH GREASE.
func chromiumHello(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "sni", "testdata", "clienthellos", "chromium.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// denied runs a flow to a deny: the client sends hello, gets exactly
// wantBytes (an alert, or nothing), and the flow ends without a dial.
func (h *harness) denied(fl *testFlow, hello []byte, wantBytes []byte) *audit.Event {
	h.t.Helper()
	if hello != nil {
		fl.send(hello)
	}
	if got := fl.received(h.t); !bytes.Equal(got, wantBytes) {
		h.t.Errorf("client got %v, want %v", got, wantBytes)
	}
	fl.wait(h.t)
	if n := h.dials.Load(); n != 0 {
		h.t.Errorf("%d dials for a deny", n)
	}
	return h.event()
}

func (h *harness) helloErrors(listener, kind string) float64 {
	return testutil.ToFloat64(h.m.ClientHelloErrors.WithLabelValues(listener, kind))
}

func TestFlowAllowTransparent(t *testing.T) {
	h := newHarness(t, "")
	origins := h.origin()
	hello := goHello(t, "allowed.test")
	fl := h.transparent()
	fl.send(append(append([]byte(nil), hello...), "ping"...))

	var srv *memConn
	select {
	case srv = <-origins:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	// The origin gets every byte the client sent, in order: the hello replayed, then the rest.
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(hello)+4)
	if _, err := io.ReadFull(srv, got); err != nil || !bytes.Equal(got[:len(hello)], hello) || string(got[len(hello):]) != "ping" {
		t.Fatalf("origin got %d bytes, %v", len(got), err)
	}
	srv.Write([]byte("pong"))
	srv.CloseWrite()
	if b := fl.received(t); string(b) != "pong" {
		t.Fatalf("client got %q", b)
	}
	fl.client.CloseWrite()
	fl.wait(t)

	e := h.event()
	h.check(e, want{listener: audit.ListenerTransparentHTTPS, action: "allow", reason: "rule", rule: "ok", segment: "lan",
		domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no})
	if e.SourceBytes != int64(len(hello)+4) || e.DestBytes != 4 {
		t.Errorf("bytes %d/%d, want %d/4", e.SourceBytes, e.DestBytes, len(hello)+4)
	}
	h.oneDecision("transparent_https/lan/allow/rule/ok")
	if n := h.dials.Load(); n != 1 {
		t.Errorf("%d dials", n)
	}
	if h.track.Open() != 0 {
		t.Errorf("%d connections still tracked", h.track.Open())
	}
}

func TestFlowAllowConnect(t *testing.T) {
	h := newHarness(t, "")
	origins := h.origin()
	hello := goHello(t, "allowed.test")
	fl := h.connect("allowed.test")
	fl.send(hello)
	var srv *memConn
	select {
	case srv = <-origins:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(srv, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("origin: %v", err)
	}
	srv.Close() // the origin ends it: the client sees the end
	if b := fl.received(t); len(b) != 0 {
		t.Fatalf("client got %q", b)
	}
	fl.client.Close()
	fl.wait(t)
	h.check(h.event(), want{listener: audit.ListenerProxy, action: "allow", reason: "rule", rule: "ok", segment: "lan",
		domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no, method: "CONNECT", status: 200})
	h.oneDecision("proxy/lan/allow/rule/ok")
	// The CONNECT's address was resolved before the 200: no second lookup.
	if h.dns.calls.Load() != 0 {
		t.Errorf("%d DNS lookups", h.dns.calls.Load())
	}
}

func TestFlowDenies(t *testing.T) {
	for _, tt := range []struct {
		name     string
		extra    string
		connect  string // "" transparent
		hello    func(t *testing.T) []byte
		reply    []byte
		want     want
		metric   string
		helloErr string // egress_client_hello_errors_total kind, if any
	}{
		{name: "deny by host (transparent SNI)", hello: func(t *testing.T) []byte { return goHello(t, "banned.test") },
			reply: alert(sni.AlertAccessDenied), metric: "transparent_https/lan/deny/rule/ban",
			want: want{action: "deny", reason: "rule", rule: "ban", segment: "lan", domain: "banned.test", ip: "127.0.0.1", sni: "banned.test", ja4: true, ech: no}},
		{name: "deny by default (transparent SNI)", hello: func(t *testing.T) []byte { return goHello(t, "unknown.test") },
			reply: alert(sni.AlertAccessDenied), metric: "transparent_https/lan/deny/default/",
			want: want{action: "deny", reason: "default", segment: "lan", domain: "unknown.test", ip: "127.0.0.1", sni: "unknown.test", ja4: true, ech: no}},
		{name: "deny by SNI after an allowed CONNECT", extra: `tls { sni_mismatch = "allow" }`, connect: "allowed.test",
			hello: func(t *testing.T) []byte { return goHello(t, "banned.test") },
			reply: alert(sni.AlertAccessDenied), metric: "proxy/lan/deny/rule/ban",
			want: want{action: "deny", reason: "rule", rule: "ban", segment: "lan", domain: "allowed.test", ip: "127.0.0.1", sni: "banned.test", ja4: true, ech: no, method: "CONNECT", status: 200}},
		{name: "SNI mismatch", connect: "allowed.test", hello: func(t *testing.T) []byte { return goHello(t, "other.test") },
			reply: alert(sni.AlertAccessDenied), metric: "proxy/lan/deny/sni_mismatch/",
			want: want{action: "deny", reason: "sni_mismatch", segment: "lan", domain: "allowed.test", ip: "127.0.0.1", sni: "other.test", ja4: true, ech: no, method: "CONNECT", status: 200}},
		{name: "no SNI (transparent)", hello: func(t *testing.T) []byte { return goHello(t, "") },
			reply: alert(sni.AlertAccessDenied), metric: "transparent_https/lan/deny/missing_sni/",
			want: want{action: "deny", reason: "missing_sni", segment: "lan", ip: "127.0.0.1", ja4: true, ech: no}},
		{name: "no SNI (CONNECT, missing_sni = deny)", extra: `tls { missing_sni = "deny" }`, connect: "allowed.test",
			hello: func(t *testing.T) []byte { return goHello(t, "") },
			reply: alert(sni.AlertAccessDenied), metric: "proxy/lan/deny/missing_sni/",
			want: want{action: "deny", reason: "missing_sni", segment: "lan", domain: "allowed.test", ip: "127.0.0.1", ja4: true, ech: no, method: "CONNECT", status: 200}},
		{name: "ECH (tls.ech = deny)", extra: `tls { ech = "deny" }`, hello: chromiumHello,
			reply: alert(sni.AlertAccessDenied), metric: "transparent_https/lan/deny/ech/",
			want: want{action: "deny", reason: "ech", segment: "lan", domain: "www.example.com", ip: "127.0.0.1", sni: "www.example.com", ja4: true, ech: yes}},
		{name: "malformed hello", hello: func(*testing.T) []byte { return []byte{22, 3, 1, 0, 8, 1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff} },
			reply: alert(sni.AlertDecodeError), metric: "transparent_https/lan/deny/malformed_client_hello/", helloErr: metrics.HelloMalformed,
			want: want{action: "deny", reason: "malformed_client_hello", segment: "lan", ip: "127.0.0.1", err: "malformed"}},
		{name: "non-TLS (transparent)", hello: func(*testing.T) []byte { return []byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n") },
			metric: "transparent_https/lan/deny/non_tls/", helloErr: metrics.HelloNotTLS,
			want: want{action: "deny", reason: "non_tls", segment: "lan", ip: "127.0.0.1"}},
		{name: "non-TLS (CONNECT)", connect: "allowed.test", hello: func(*testing.T) []byte { return []byte("SSH-2.0-OpenSSH_9.6\r\n") },
			metric: "proxy/lan/deny/non_tls/", helloErr: metrics.HelloNotTLS,
			want: want{action: "deny", reason: "non_tls", segment: "lan", domain: "allowed.test", ip: "127.0.0.1", method: "CONNECT", status: 200}},
		{name: "private destination (transparent SNI)", hello: func(t *testing.T) []byte { return goHello(t, "private.test") },
			reply: alert(sni.AlertAccessDenied), metric: "transparent_https/lan/deny/private_destination/",
			want: want{action: "deny", reason: "private_destination", segment: "lan", domain: "private.test", ip: "127.0.0.1", sni: "private.test", ja4: true, ech: no,
				err: "destination address prohibited: private.test is 127.0.0.9"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.extra)
			h.origin() // a bug that dials is seen, not refused
			var fl *testFlow
			if tt.connect != "" {
				fl = h.connect(tt.connect)
			} else {
				fl = h.transparent()
			}
			e := h.denied(fl, tt.hello(t), tt.reply)
			w := tt.want
			w.listener = audit.ListenerTransparentHTTPS
			if tt.connect != "" {
				w.listener = audit.ListenerProxy
			}
			h.check(e, w)
			h.oneDecision(tt.metric)
			if tt.helloErr != "" {
				if n := h.helloErrors(w.listener, tt.helloErr); n != 1 {
					t.Errorf("egress_client_hello_errors_total{%s} = %v", tt.helloErr, n)
				}
			}
		})
	}
}

// A truncated hello (the client gives up half-way) is a malformed hello,
// closed without an alert.
func TestFlowTruncatedHello(t *testing.T) {
	h := newHarness(t, "")
	hello := goHello(t, "allowed.test")
	fl := h.transparent()
	go func() {
		fl.client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fl.client.Write(hello[:len(hello)/2])
		fl.client.CloseWrite()
	}()
	e := h.denied(fl, nil, nil)
	h.check(e, want{listener: audit.ListenerTransparentHTTPS, action: "deny", reason: "malformed_client_hello", segment: "lan", ip: "127.0.0.1",
		err: "truncated"})
	h.oneDecision("transparent_https/lan/deny/malformed_client_hello/")
	if n := h.helloErrors(audit.ListenerTransparentHTTPS, metrics.HelloTruncated); n != 1 {
		t.Errorf("truncated hellos counted %v", n)
	}
}

// A hello that does not arrive within tls.hello_timeout is denied
// (hello_timeout) and closed without an alert.
func TestFlowHelloTimeout(t *testing.T) {
	hello := goHello(t, "allowed.test")
	for _, connect := range []bool{false, true} {
		t.Run(fmt.Sprint("connect=", connect), func(t *testing.T) {
			h := newHarness(t, `tls { hello_timeout = "200ms" }`)
			var fl *testFlow
			w := want{listener: audit.ListenerTransparentHTTPS, action: "deny", reason: "hello_timeout", segment: "lan", ip: "127.0.0.1", err: "timeout"}
			if connect {
				fl = h.connect("allowed.test")
				w.listener, w.domain, w.method, w.status = audit.ListenerProxy, "allowed.test", "CONNECT", 200
			} else {
				fl = h.transparent()
			}
			fl.send(hello[:10]) // a record header and a little: then nothing
			e := h.denied(fl, nil, nil)
			h.check(e, w)
			h.oneDecision(w.listener + "/lan/deny/hello_timeout/")
			if n := h.helloErrors(w.listener, metrics.HelloTimeout); n != 1 {
				t.Errorf("timeouts counted %v", n)
			}
		})
	}
}

// A name that does not resolve: the allow stands, the event says dns_error,
// the client gets internal_error; nothing is dialed.
func TestFlowDNSError(t *testing.T) {
	h := newHarness(t, "")
	h.origin()
	fl := h.transparent()
	e := h.denied(fl, goHello(t, "nxdomain.test"), alert(sni.AlertInternalError))
	h.check(e, want{listener: audit.ListenerTransparentHTTPS, action: "allow", reason: "dns_error", rule: "ok", segment: "lan",
		domain: "nxdomain.test", ip: "127.0.0.1", sni: "nxdomain.test", ja4: true, ech: no, err: "no such host (stub)"})
	h.oneDecision("transparent_https/lan/allow/rule/ok")
	if h.dns.calls.Load() != 1 {
		t.Errorf("%d lookups", h.dns.calls.Load())
	}
	if n := testutil.ToFloat64(h.m.UpstreamErrors.WithLabelValues(metrics.UpstreamDNSError)); n != 1 {
		t.Errorf("upstream dns errors %v", n)
	}
}

// A dial that fails: the allow stands, the event says
// destination_unavailable with the error, the client gets internal_error.
func TestFlowDialFailure(t *testing.T) {
	for _, connect := range []bool{false, true} {
		t.Run(fmt.Sprint("connect=", connect), func(t *testing.T) {
			h := newHarness(t, "") // h.dial nil: every dial is refused
			var fl *testFlow
			w := want{listener: audit.ListenerTransparentHTTPS, action: "allow", reason: "destination_unavailable", rule: "ok", segment: "lan",
				domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no,
				err: "destination unavailable: connection refused (stub)"}
			if connect {
				fl = h.connect("allowed.test")
				w.listener, w.method, w.status = audit.ListenerProxy, "CONNECT", 200
			} else {
				fl = h.transparent()
			}
			fl.send(goHello(t, "allowed.test"))
			if got := fl.received(t); !bytes.Equal(got, alert(sni.AlertInternalError)) {
				t.Errorf("client got %v", got)
			}
			fl.wait(t)
			h.check(h.event(), w)
			h.oneDecision(w.listener + "/lan/allow/rule/ok")
			if h.dials.Load() != 1 {
				t.Errorf("%d dials", h.dials.Load())
			}
			if n := testutil.ToFloat64(h.m.UpstreamErrors.WithLabelValues(metrics.UpstreamDestinationUnavailable)); n != 1 {
				t.Errorf("upstream errors %v", n)
			}
		})
	}
}

// tunnel runs an allowed flow to a running tunnel (one round trip through
// it) and returns it with the origin's end.
func (h *harness) tunnel(connect bool) (*testFlow, *memConn) {
	h.t.Helper()
	origins := h.origin()
	hello := goHello(h.t, "allowed.test")
	var fl *testFlow
	if connect {
		fl = h.connect("allowed.test")
	} else {
		fl = h.transparent()
	}
	fl.send(hello)
	var srv *memConn
	select {
	case srv = <-origins:
	case <-time.After(10 * time.Second):
		h.t.Fatal("nothing dialed")
	}
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(srv, make([]byte, len(hello))); err != nil {
		h.t.Fatal(err)
	}
	go srv.Write([]byte("pong"))
	fl.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(fl.client, make([]byte, 4)); err != nil {
		h.t.Fatal(err)
	}
	return fl, srv
}

// A reload that denies a running tunnel's name closes it; its one event is
// a deny with reason config_reload. The decision was counted once, as the
// allow it was when made.
func TestFlowReloadCut(t *testing.T) {
	for _, connect := range []bool{false, true} {
		t.Run(fmt.Sprint("connect=", connect), func(t *testing.T) {
			h := newHarness(t, "")
			fl, srv := h.tunnel(connect)
			if len(h.sink.all()) != 0 {
				t.Fatal("event before the tunnel ended")
			}
			decidedUnder := h.store.Config().Version
			// A reload that still allows it leaves it alone.
			if n := h.publish("", okDomains); n != 0 {
				t.Fatalf("reload closed %d", n)
			}
			if n := h.publish("", `"other.test"`); n != 1 {
				t.Fatalf("reload closed %d tunnels, want 1", n)
			}
			if b := fl.received(t); len(b) != 0 {
				t.Fatalf("client got %q", b)
			}
			fl.wait(t)
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadAll(srv); err != nil {
				t.Fatalf("origin not closed: %v", err)
			}
			w := want{listener: audit.ListenerTransparentHTTPS, action: "deny", reason: "config_reload", rule: "ok", segment: "lan",
				domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no, err: "closed: config_reload"}
			if connect {
				w.listener, w.method, w.status = audit.ListenerProxy, "CONNECT", 200
			}
			e := h.event()
			// The event names the config the decision was made under.
			if e.ConfigVersion != decidedUnder || decidedUnder == h.store.Config().Version {
				t.Errorf("config_version %q, want %q (the one in force at the decision)", e.ConfigVersion, decidedUnder)
			}
			e.ConfigVersion = h.store.Config().Version
			h.check(e, w)
			if e.DestBytes != 4 {
				t.Errorf("destination.bytes %d", e.DestBytes)
			}
			h.oneDecision(w.listener + "/lan/allow/rule/ok")
			if n := testutil.ToFloat64(h.m.TunnelsClosedOnReload); n != 1 {
				t.Errorf("tunnels closed on reload %v", n)
			}
		})
	}
}

// A shutdown that closes a connection whose hello is pending: one deny,
// reason shutdown, no alert.
func TestFlowShutdownWhileHelloPending(t *testing.T) {
	for _, connect := range []bool{false, true} {
		t.Run(fmt.Sprint("connect=", connect), func(t *testing.T) {
			h := newHarness(t, `tls { hello_timeout = "30s" }`)
			var fl *testFlow
			w := want{listener: audit.ListenerTransparentHTTPS, action: "deny", reason: "shutdown", segment: "lan", ip: "127.0.0.1", err: "closed: shutdown"}
			if connect {
				fl = h.connect("allowed.test")
				w.listener, w.domain, w.method, w.status = audit.ListenerProxy, "allowed.test", "CONNECT", 200
			} else {
				fl = h.transparent()
			}
			hello := goHello(t, "allowed.test")
			// Part of the hello, all read by the flow: it is now waiting for the rest.
			fl.client.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fl.client.Write(hello[:20]); err != nil {
				t.Fatal(err)
			}
			if n := h.track.CloseAll(); n != 1 {
				t.Fatalf("CloseAll closed %d", n)
			}
			e := h.denied(fl, nil, nil)
			h.check(e, w)
			h.oneDecision(w.listener + "/lan/deny/shutdown/")
			// Not counted as a bad hello.
			for _, kind := range []string{metrics.HelloTruncated, metrics.HelloMalformed, metrics.HelloTimeout} {
				if n := h.helloErrors(w.listener, kind); n != 0 {
					t.Errorf("hello errors %s = %v", kind, n)
				}
			}
		})
	}
}

// A CONNECT's first bytes that are not TLS, under tls.non_tls = allow: the
// CONNECT decision stands and the bytes go to the destination.
func TestFlowNonTLSAllowed(t *testing.T) {
	h := newHarness(t, `tls { non_tls = "allow" }`)
	origins := h.origin()
	fl := h.connect("allowed.test")
	payload := []byte("SSH-2.0-OpenSSH_9.6\r\n")
	fl.send(payload)
	var srv *memConn
	select {
	case srv = <-origins:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(srv, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("origin got %q, %v", got, err)
	}
	srv.Close()
	fl.received(t)
	fl.client.Close()
	fl.wait(t)
	h.check(h.event(), want{listener: audit.ListenerProxy, action: "allow", reason: "rule", rule: "ok", segment: "lan",
		domain: "allowed.test", ip: "127.0.0.1", method: "CONNECT", status: 200})
	h.oneDecision("proxy/lan/allow/rule/ok")
}

// A reload between the CONNECT's 200 and its hello: the flow decides under
// the configuration in force when the hello arrived, CONNECT target
// included.
func TestFlowConfigChangedSinceConnect(t *testing.T) {
	h := newHarness(t, `tls { hello_timeout = "30s" }`)
	h.origin()
	fl := h.connect("allowed.test")
	h.publish(`tls { hello_timeout = "30s" }`, `"other.test"`) // allowed.test now falls to the default deny
	e := h.denied(fl, goHello(t, "allowed.test"), alert(sni.AlertAccessDenied))
	h.check(e, want{listener: audit.ListenerProxy, action: "deny", reason: "default", segment: "lan", domain: "allowed.test", ip: "127.0.0.1",
		sni: "allowed.test", ja4: true, ech: no, method: "CONNECT", status: 200})
	h.oneDecision("proxy/lan/deny/default/")
}

// A shutdown that closes a running tunnel: its one event is the allow it
// was, with error.message "closed: shutdown".
func TestFlowShutdownRunningTunnel(t *testing.T) {
	h := newHarness(t, "")
	fl, srv := h.tunnel(false)
	if n := h.track.CloseAll(); n != 1 {
		t.Fatalf("CloseAll closed %d", n)
	}
	if b := fl.received(t); len(b) != 0 {
		t.Fatalf("client got %q", b)
	}
	fl.wait(t)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(srv); err != nil {
		t.Fatalf("origin not closed: %v", err)
	}
	h.check(h.event(), want{listener: audit.ListenerTransparentHTTPS, action: "allow", reason: "rule", rule: "ok", segment: "lan",
		domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no, err: "closed: shutdown"})
	h.oneDecision("transparent_https/lan/allow/rule/ok")
}

// A reload that lands after the flow was decided but before its tunnel is
// registered (here: during the dial, before the reload's enforcement could
// see the flow's names) is caught by deciding again at registration: the
// tunnel is closed at once and its event is a deny, config_reload.
func TestFlowReloadDuringDial(t *testing.T) {
	h := newHarness(t, "")
	origins := make(chan *memConn, 1)
	h.dial = func(addr netip.AddrPort) (net.Conn, error) {
		// The flow's goroutine is here: publish a config that denies it.
		if n := h.publish("", `"other.test"`); n != 1 {
			t.Errorf("reload closed %d flows, want 1: the flow's names are registered before its dial", n)
		}
		near, far := memPair(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:50000")), net.TCPAddrFromAddrPort(addr))
		origins <- far
		t.Cleanup(func() { near.Close(); far.Close() })
		return near, nil
	}
	fl := h.transparent()
	decidedUnder := h.store.Config().Version
	hello := goHello(t, "allowed.test")
	fl.send(hello)
	// The origin reads what it is sent until the tunnel closes it.
	var srv *memConn
	select {
	case srv = <-origins:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing dialed")
	}
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(srv)
		got <- result{b, err}
	}()
	if b := fl.received(t); len(b) != 0 {
		t.Fatalf("client got %q", b)
	}
	fl.wait(t)
	if r := <-got; r.err != nil || len(r.b) != 0 {
		t.Fatalf("origin got %d bytes, %v; want the close and not a byte of the hello", len(r.b), r.err)
	}
	e := h.event()
	if e.ConfigVersion != decidedUnder {
		t.Errorf("config_version %q, want %q", e.ConfigVersion, decidedUnder)
	}
	e.ConfigVersion = h.store.Config().Version
	h.check(e, want{listener: audit.ListenerTransparentHTTPS, action: "deny", reason: "config_reload", rule: "ok", segment: "lan",
		domain: "allowed.test", ip: "127.0.0.1", sni: "allowed.test", ja4: true, ech: no, err: "closed: config_reload"})
	h.oneDecision("transparent_https/lan/allow/rule/ok")
}
