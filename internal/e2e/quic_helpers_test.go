package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// quicConfig is a config with only the transparent QUIC listener (at
// listen), dialing quicPort; test names resolve to 127.0.0.1 and the
// loopback client is in the "office" segment, which denies tiktok.com.
func quicConfig(listen string, quicPort int, extra string) string {
	return fmt.Sprintf(`
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
transparent {
  https_listen = ""
  http_listen  = ""
  quic_listen  = "%s"
  quic_port    = %d
}
upstream {
  hosts = {
    "allowed.test"   = "127.0.0.1"
    "retry.test"     = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["tiktok.com"] }
policy "base" {
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
segment "office" {
  sources  = ["127.0.0.0/8"]
  default  = "allow"
  policies = ["base"]
}
%s
`, listen, quicPort, extra)
}

// startQUIC starts egress with the QUIC listener on a free UDP port.
func startQUIC(t testing.TB, quicPort int, extra string) (*Proc, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := pc.LocalAddr().String() // free a moment ago
	pc.Close()
	return Start(t, quicConfig(listen, quicPort, extra), nil), listen
}

// quicOrigin is an HTTP/3 server on 127.0.0.1 (quic-go), answering "h3 ok
// <host>" and counting requests.
type quicOrigin struct {
	Port     int
	Requests atomic.Int64
}

func newQUICOrigin(t testing.TB, ca *CA, retry bool, names ...string) *quicOrigin {
	t.Helper()
	return newQUICOriginVersions(t, ca, retry, []quic.Version{quic.Version1, quic.Version2}, names...)
}

// newQUICOriginVersions is newQUICOrigin speaking only versions.
func newQUICOriginVersions(t testing.TB, ca *CA, retry bool, versions []quic.Version, names ...string) *quicOrigin {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o := &quicOrigin{Port: pc.LocalAddr().(*net.UDPAddr).Port}
	tr := &quic.Transport{Conn: pc}
	if retry {
		tr.VerifySourceAddress = func(net.Addr) bool { return true } // a Retry for every new connection
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, names...)}, NextProtos: []string{http3.NextProtoH3}}
	ln, err := tr.ListenEarly(tlsConf, &quic.Config{Versions: versions})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.Requests.Add(1)
		fmt.Fprintf(w, "h3 ok %s", r.Host)
	})}
	go srv.ServeListener(ln)
	t.Cleanup(func() { srv.Close(); ln.Close(); tr.Close(); pc.Close() })
	return o
}

// h3Client is an HTTP/3 client whose every connection goes to the egress
// QUIC listener at via (as a firewall redirect would send it), from a UDP
// socket on src.
type h3Client struct {
	rt   *http3.Transport
	tr   *quic.Transport
	Addr string // the client's address and port as egress sees it (without a shim)
}

func newH3Client(t *testing.T, src, via string, pool *x509.CertPool, versions ...quic.Version) *h3Client {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		t.Fatal(err)
	}
	target, err := net.ResolveUDPAddr("udp", via)
	if err != nil {
		t.Fatal(err)
	}
	return newH3ClientOn(t, pc, target, pool, versions...)
}

// newH3ClientOn is newH3Client on a given socket and target (a shim).
func newH3ClientOn(t *testing.T, pc *net.UDPConn, target net.Addr, pool *x509.CertPool, versions ...quic.Version) *h3Client {
	t.Helper()
	if len(versions) == 0 {
		versions = []quic.Version{quic.Version1}
	}
	tr := &quic.Transport{Conn: pc}
	c := &h3Client{tr: tr, Addr: pc.LocalAddr().String()}
	c.rt = &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		QUICConfig:      &quic.Config{Versions: versions, HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: 5 * time.Second},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return tr.Dial(ctx, target, tlsCfg, cfg)
		},
	}
	t.Cleanup(c.Close)
	return c
}

// Close closes the client's connections (CONNECTION_CLOSE to the server)
// and its socket.
func (c *h3Client) Close() {
	c.rt.Close()
	c.tr.Close()
}

// Get fetches url within 10 s.
func (c *h3Client) Get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// udpCounter is a UDP socket on 127.0.0.1 that counts what reaches it and
// never answers: an origin that must see nothing.
func udpCounter(t *testing.T) (port int, packets *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	packets = new(atomic.Int64)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			packets.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).Port, packets
}

// udpShim sits between one client and the egress listener: it forwards the
// client's datagrams through rewrite (which returns the datagrams to send
// now, in order) and everything from egress back unchanged.
type udpShim struct {
	Addr *net.UDPAddr // where the client sends
	// DropReplies is how many of egress's next datagrams to the client
	// are lost.
	DropReplies atomic.Int32
	mu          sync.Mutex
	client      *net.UDPAddr
	seen        int // client datagrams so far
}

func newUDPShim(t *testing.T, egress string, rewrite func(n int, d []byte) [][]byte) *udpShim {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raddr, _ := net.ResolveUDPAddr("udp", egress)
	back, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	s := &udpShim{Addr: front.LocalAddr().(*net.UDPAddr)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.client = from
			s.seen++
			k := s.seen
			s.mu.Unlock()
			for _, d := range rewrite(k, append([]byte(nil), buf[:n]...)) {
				back.Write(d)
			}
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if s.DropReplies.Add(-1) >= 0 {
				continue
			}
			s.mu.Lock()
			c := s.client
			s.mu.Unlock()
			if c != nil {
				front.WriteToUDP(buf[:n], c)
			}
		}
	}()
	t.Cleanup(func() { front.Close(); back.Close() })
	return s
}

// quicEvent waits for the transparent_quic event whose SNI is sni.
func quicEvent(t *testing.T, p *Proc, sni string, within time.Duration) Event {
	t.Helper()
	return p.WaitEvent(t, within, func(e Event) bool {
		return e.Str("egress.listener") == "transparent_quic" && e.Str("tls.client.server_name") == sni
	})
}

func quicDropped(reason string) string {
	return `egress_quic_packets_dropped_total{reason="` + reason + `"}`
}
