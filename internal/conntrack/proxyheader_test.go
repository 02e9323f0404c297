package conntrack

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// acceptFrom returns the server side of a loopback connection dialed from
// src, after the client has written payload.
func acceptFrom(t *testing.T, src string, payload []byte) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestProxyHeaderTrustedPeers(t *testing.T) {
	e := testEngine(t, `
proxy {
  proxy_protocol      = true
  proxy_protocol_from = ["127.0.0.2"]
}
transparent {
  proxy_protocol      = true
  proxy_protocol_from = ["127.0.0.4/31"]
}
tls { hello_timeout = "2s" }
`)
	header := []byte("PROXY TCP4 10.20.5.7 127.0.0.1 40000 443\r\n")
	rest := []byte("CONNECT a.example:443 HTTP/1.1\r\n\r\n")
	payload := append(append([]byte(nil), header...), rest...)
	untrusted := func(l string) float64 {
		return testutil.ToFloat64(e.Metrics().ConnectionsRejected.WithLabelValues(l, metrics.RejectProxyProtocolUntrusted))
	}

	for _, tt := range []struct {
		listener, src string
		trusted       bool
	}{
		{audit.ListenerProxy, "127.0.0.2", true},
		{audit.ListenerProxy, "127.0.0.3", false},
		{audit.ListenerProxy, "127.0.0.4", false}, // the transparent balancers' list is not the proxy's
		{audit.ListenerTransparentHTTPS, "127.0.0.5", true},
		{audit.ListenerTransparentHTTP, "127.0.0.4", true},
		{audit.ListenerTransparentHTTP, "127.0.0.2", false},
	} {
		t.Run(tt.listener+" from "+tt.src, func(t *testing.T) {
			before := untrusted(tt.listener)
			c := acceptFrom(t, tt.src, payload)
			br := bufio.NewReaderSize(c, 512)
			src, err := e.ProxyHeader(e.config(), tt.listener, c, br)
			if tt.trusted {
				if err != nil || src.String() != "10.20.5.7:40000" {
					t.Fatalf("got %v, %v", src, err)
				}
				if b, _ := br.Peek(len(rest)); !bytes.Equal(b, rest) {
					t.Fatalf("after the header: %q", b)
				}
				return
			}
			if !errors.Is(err, ErrProxyUntrusted) || src.IsValid() {
				t.Fatalf("got %v, %v; want ErrProxyUntrusted", src, err)
			}
			if untrusted(tt.listener) != before+1 {
				t.Fatalf("not counted")
			}
			// Nothing was read: the header is still all there.
			if br.Buffered() != 0 {
				t.Fatalf("%d bytes buffered", br.Buffered())
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("the connection's bytes were consumed: %q, %v", got, err)
			}
		})
	}
}
