package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Allowed tunnels carry http.request.method CONNECT and the 200 they were
// answered, like denied ones carry CONNECT and 403: a SIEM search for CONNECT
// finds every explicit-proxy tunnel.
func TestEventConnectOnAllowedTunnels(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	p := Start(t, baseConfig, nil)
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(origin.Port))
	if code != 200 {
		t.Fatalf("CONNECT allowed.test: %d", code)
	}
	if _, err := HTTPSGet(c, "allowed.test", ca.Pool, "/"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, pxEventWith("destination.domain", "allowed.test", "event.action", "allow"))
	if ev.Str("http.request.method") != "CONNECT" || ev.Str("http.response.status_code") != "200" {
		t.Fatalf("allowed tunnel: http.request.method %q, http.response.status_code %q; want CONNECT, 200\n%v",
			ev.Str("http.request.method"), ev.Str("http.response.status_code"), ev)
	}
	connectCode(t, p, "www.tiktok.com:443")
	ev = p.WaitEvent(t, 5*time.Second, pxEventWith("destination.domain", "www.tiktok.com", "event.action", "deny"))
	if ev.Str("http.request.method") != "CONNECT" || ev.Str("http.response.status_code") != "403" {
		t.Fatalf("denied CONNECT: %v", ev)
	}
}

// Plain HTTP: source.bytes counts the request head as received, as
// destination.bytes counts the response head sent.
func TestEventPlainHTTPCountsRequestHead(t *testing.T) {
	origin := NewOrigin(t, nil, nil, "allowed.test")
	p := Start(t, baseConfig, nil)
	raw := fmt.Sprintf("GET http://allowed.test:%d/count HTTP/1.1\r\nHost: allowed.test:%d\r\nUser-Agent: e2e\r\nConnection: close\r\n\r\n",
		origin.Port, origin.Port)
	resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", raw)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	ev := p.WaitEvent(t, 5*time.Second, pxEventWith("url.path", "/count", "event.action", "allow"))
	src, _ := strconv.Atoi(ev.Str("source.bytes"))
	dst, _ := strconv.Atoi(ev.Str("destination.bytes"))
	if src != len(raw) {
		t.Errorf("source.bytes = %d, want the %d bytes of the request head", src, len(raw))
	}
	if dst <= len(body) {
		t.Errorf("destination.bytes = %d, want the response head and the %d-byte body", dst, len(body))
	}
}
