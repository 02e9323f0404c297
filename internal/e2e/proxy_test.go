package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of the explicit proxy listener (SPEC §4, §5, §8): real
// egress binary, real clients, loopback origins.

const pxDeniedStatus = `egress; error=http_request_denied; details="rule no-social"`

// An allowed CONNECT tunnel carries a real TLS session and its event has every
// field SPEC §6 lists for a tunnel.
func TestProxyConnectAllowEvent(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	p := Start(t, baseConfig, nil)

	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "allowed.test:"+itoa(origin.Port))
	if code != 200 {
		t.Fatalf("CONNECT allowed.test: %d", code)
	}
	body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/e")
	if err != nil || body != "hello from allowed.test /e" {
		t.Fatalf("body %q, %v", body, err)
	}
	c.Close()
	ev := p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "allowed.test", "event.action", "allow"))
	want := map[string]string{
		"source.ip":              "127.0.0.1",
		"destination.domain":     "allowed.test",
		"destination.ip":         "127.0.0.1",
		"destination.port":       itoa(origin.Port),
		"tls.client.server_name": "allowed.test",
		"egress.tls.ech":         "false",
		"egress.listener":        "proxy",
		"egress.segment":         "office",
		"rule.name":              "",
		"event.reason":           "default",
	}
	for k, v := range want {
		if got := ev.Str(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"egress.tls.ja4", "egress.config_version", "event.id", "@timestamp"} {
		if ev.Str(k) == "" {
			t.Errorf("%s is empty", k)
		}
	}
	for _, k := range []string{"source.bytes", "destination.bytes", "event.duration", "source.port"} {
		if n, err := strconv.ParseInt(ev.Str(k), 10, 64); err != nil || n <= 0 {
			t.Errorf("%s = %q, want > 0", k, ev.Str(k))
		}
	}
	if !strings.HasPrefix(ev.Str("egress.tls.ja4"), "t13d") {
		t.Errorf("ja4 %q: want a TLS 1.3 TCP fingerprint", ev.Str("egress.tls.ja4"))
	}
	if t.Failed() {
		t.Logf("event: %v", ev)
	}
}

// A CONNECT denied on its host: 403 with Proxy-Status before any tunnel; the
// origin never sees a connection; the plain HTTP block page in JSON names the
// segment, the rule and the event id of the event.
func TestProxyDenyByHost(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "www.tiktok.com")
	plainOrigin := NewOrigin(t, nil, nil)
	p := Start(t, baseConfig, nil)

	t.Run("connect", func(t *testing.T) {
		target := "www.tiktok.com:" + itoa(origin.Port)
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("Proxy-Status"); got != pxDeniedStatus {
			t.Fatalf("Proxy-Status %q, want %q", got, pxDeniedStatus)
		}
		ev := p.WaitEvent(t, 5*time.Second, pxEventWith("destination.domain", "www.tiktok.com", "http.request.method", "CONNECT"))
		for k, v := range map[string]string{"event.action": "deny", "event.reason": "rule", "rule.name": "no-social",
			"egress.segment": "office", "egress.listener": "proxy", "http.response.status_code": "403"} {
			if got := ev.Str(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		pxNoConns(t, &origin.Conns, "denied CONNECT origin")
	})

	t.Run("plain-json", func(t *testing.T) {
		url := fmt.Sprintf("http://www.tiktok.com:%d/page", plainOrigin.Port)
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1",
			"GET "+url+" HTTP/1.1\r\nHost: www.tiktok.com:"+itoa(plainOrigin.Port)+"\r\nAccept: application/json\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Proxy-Status"); got != pxDeniedStatus {
			t.Fatalf("Proxy-Status %q, want %q", got, pxDeniedStatus)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Content-Type %q", ct)
		}
		var page struct {
			Segment string `json:"segment"`
			Rule    string `json:"rule"`
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("block page is not JSON: %v: %s", err, body)
		}
		if page.Segment != "office" || page.Rule != "no-social" || page.EventID == "" {
			t.Fatalf("block page %+v", page)
		}
		ev := p.WaitEvent(t, 5*time.Second, pxEventWith("event.id", page.EventID))
		for k, v := range map[string]string{"event.action": "deny", "event.reason": "rule", "rule.name": "no-social",
			"egress.segment": "office", "url.domain": "www.tiktok.com", "url.path": "/page", "http.request.method": "GET"} {
			if got := ev.Str(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		pxNoConns(t, &plainOrigin.Conns, "denied plain HTTP origin")
	})

	t.Run("plain-html", func(t *testing.T) {
		url := fmt.Sprintf("http://www.tiktok.com:%d/", plainOrigin.Port)
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: www.tiktok.com:"+itoa(plainOrigin.Port)+"\r\n\r\n")
		if resp.StatusCode != 403 || !strings.Contains(body, "no-social") || !strings.Contains(body, "office") {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
		pxNoConns(t, &plainOrigin.Conns, "denied plain HTTP origin")
	})
}

// Names are normalised: case and a trailing dot change nothing.
func TestProxyNameNormalisation(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	p := Start(t, baseConfig, nil)

	t.Run("denied-mixed-case-dot", func(t *testing.T) {
		_, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "WWW.TikTok.COM.:"+itoa(origin.Port))
		if code != 403 {
			t.Fatalf("CONNECT WWW.TikTok.COM.: %d, want 403", code)
		}
		pxNoConns(t, &origin.Conns, "origin")
	})
	t.Run("allowed-mixed-case-dot", func(t *testing.T) {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "Allowed.TEST.:"+itoa(origin.Port))
		if code != 200 {
			t.Fatalf("CONNECT Allowed.TEST.: %d, want 200", code)
		}
		body, err := HTTPSGet(c, "allowed.test", ca.Pool, "/n")
		if err != nil || body != "hello from allowed.test /n" {
			t.Fatalf("body %q, %v", body, err)
		}
		c.Close()
		p.WaitEvent(t, 5*time.Second, pxEventWith("destination.domain", "allowed.test", "event.action", "allow", "event.reason", "default"))
	})
	t.Run("guest-allowed-mixed-case", func(t *testing.T) {
		// The guest segment allows only allowed.test by rule.
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", "ALLOWED.test:"+itoa(origin.Port))
		if code != 200 {
			t.Fatalf("guest CONNECT ALLOWED.test: %d, want 200", code)
		}
		body, err := HTTPSGet(c, "Allowed.Test", ca.Pool, "/g")
		if err != nil || !strings.HasSuffix(body, "/g") {
			t.Fatalf("body %q, %v", body, err)
		}
	})
}

// Every plain-HTTP request on a keep-alive connection is decided on its own,
// pipelined requests included, in either order.
func TestProxyPipelinedPlainHTTP(t *testing.T) {
	origin := NewOrigin(t, nil, nil)
	p := Start(t, baseConfig, nil)
	port := itoa(origin.Port)
	allowed := "GET http://allowed.test:" + port + "/a HTTP/1.1\r\nHost: allowed.test:" + port + "\r\n\r\n"
	denied := "GET http://www.tiktok.com:" + port + "/b HTTP/1.1\r\nHost: www.tiktok.com:" + port + "\r\n\r\n"

	check := func(t *testing.T, first, second string) {
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		defer c.Close()
		if _, err := c.Write([]byte(first + second)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := pxNewReader(c)
		for _, raw := range []string{first, second} {
			resp, body := pxReadResp(t, br, raw)
			if raw == allowed {
				if resp.StatusCode != 200 || body != "hello from allowed.test:"+port+" /a" {
					t.Fatalf("%s: %d %q", pxFirstLine(raw), resp.StatusCode, body)
				}
			} else {
				if resp.StatusCode != 403 || resp.Header.Get("Proxy-Status") != pxDeniedStatus {
					t.Fatalf("%s: %d, Proxy-Status %q", pxFirstLine(raw), resp.StatusCode, resp.Header.Get("Proxy-Status"))
				}
				if resp.Close {
					t.Fatalf("%s: a policy deny of a body-less request should keep the connection", pxFirstLine(raw))
				}
			}
		}
	}
	t.Run("allowed-then-denied", func(t *testing.T) { check(t, allowed, denied) })
	t.Run("denied-then-allowed", func(t *testing.T) { check(t, denied, allowed) })
	t.Run("denied-with-body-closes", func(t *testing.T) {
		// A denied request's body is not read: the connection must close
		// rather than parse the body as the next request.
		body := allowed // a body that looks like a request
		req := "POST http://www.tiktok.com:" + port + "/b HTTP/1.1\r\nHost: www.tiktok.com:" + port +
			"\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		defer c.Close()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := pxNewReader(c)
		resp, _ := pxReadResp(t, br, req)
		if resp.StatusCode != 403 || !resp.Close {
			t.Fatalf("status %d, close %v; want 403 and Connection: close", resp.StatusCode, resp.Close)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("bytes after the 403: the body was taken as a request")
		}
	})
	t.Run("denied-allowed-denied-allowed", func(t *testing.T) {
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		defer c.Close()
		seq := []string{denied, allowed, denied, allowed}
		if _, err := c.Write([]byte(strings.Join(seq, ""))); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := pxNewReader(c)
		for i, raw := range seq {
			resp, _ := pxReadResp(t, br, raw)
			want := 403
			if raw == allowed {
				want = 200
			}
			if resp.StatusCode != want {
				t.Fatalf("request %d (%s): %d, want %d", i, pxFirstLine(raw), resp.StatusCode, want)
			}
		}
	})
}

// Absolute-URI host versus a different Host header follows tls.sni_mismatch.
func TestProxyHostHeaderMismatch(t *testing.T) {
	origin := NewOrigin(t, nil, nil)
	p := Start(t, baseConfig, nil)
	port := itoa(origin.Port)
	url := "http://allowed.test:" + port + "/h"

	t.Run("mismatch-denied", func(t *testing.T) {
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "error=http_request_denied") || !strings.Contains(ps, "sni_mismatch") {
			t.Fatalf("Proxy-Status %q", ps)
		}
		p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "sni_mismatch", "event.action", "deny", "url.path", "/h"))
		pxNoConns(t, &origin.Conns, "origin")
	})
	t.Run("mismatch-allowed-name-denied", func(t *testing.T) {
		// A different allowed name is a mismatch too.
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: other.test:"+port+"\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		pxNoConns(t, &origin.Conns, "origin")
	})
	t.Run("mismatch-after-large-header", func(t *testing.T) {
		// A header larger than the proxy's read buffer, the Host field last.
		pad := "X-Pad: " + strings.Repeat("p", 12000) + "\r\n"
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\n"+pad+pad+"Host: www.tiktok.com\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		pxNoConns(t, &origin.Conns, "origin")
		noBody := "GET " + url + " HTTP/1.1\r\n" + pad + "Host: allowed.test:" + port + "\r\n\r\n"
		if resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", noBody); resp.StatusCode != 200 {
			t.Fatalf("large header, same host: status %d", resp.StatusCode)
		}
	})
	t.Run("pipelined-mismatch-second", func(t *testing.T) {
		// The Host of each pipelined request is its own.
		good := "GET " + url + " HTTP/1.1\r\nHost: allowed.test:" + port + "\r\n\r\n"
		bad := "GET " + url + " HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n"
		c := DialFrom(t, "127.0.0.1", p.ProxyAddr)
		defer c.Close()
		if _, err := c.Write([]byte(good + bad + good)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := pxNewReader(c)
		for i, want := range []int{200, 403, 200} {
			if resp, _ := pxReadResp(t, br, good); resp.StatusCode != want {
				t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
			}
		}
	})
	t.Run("same-host", func(t *testing.T) {
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: allowed.test:"+port+"\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello from allowed.test:"+port+" /h" {
			t.Fatalf("status %d: %q", resp.StatusCode, body)
		}
	})
	t.Run("same-host-case-and-dot", func(t *testing.T) {
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET "+url+" HTTP/1.1\r\nHost: Allowed.Test.:"+port+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// Destinations: private addresses are refused unless listed in
// allow_private; a name that does not resolve is a 502 dns_error.
func TestProxyDestinations(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test")
	cfg := pxConfigWith(t, baseConfig, `allow_private = ["127.0.0.1/32"]`, "")
	// The name below ends in .onion, which Go's own resolver refuses without
	// sending a query (RFC 7686): a DNS failure with no DNS traffic.
	t.Setenv("GODEBUG", "netdns=go")
	p := Start(t, cfg, nil)
	port := itoa(origin.Port)

	for _, target := range []string{"127.0.0.1:" + port, "allowed.test:" + port} {
		t.Run("connect-"+target, func(t *testing.T) {
			resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
			if resp.StatusCode != 403 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ps := resp.Header.Get("Proxy-Status"); ps != "egress; error=destination_ip_prohibited" {
				t.Fatalf("Proxy-Status %q", ps)
			}
		})
	}
	t.Run("plain", func(t *testing.T) {
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", "GET http://allowed.test:"+port+"/ HTTP/1.1\r\nHost: allowed.test:"+port+"\r\n\r\n")
		if resp.StatusCode != 403 || resp.Header.Get("Proxy-Status") != "egress; error=destination_ip_prohibited" {
			t.Fatalf("status %d, Proxy-Status %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
		}
	})
	p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "private_destination", "destination.domain", "allowed.test", "event.action", "deny"))
	pxNoConns(t, &origin.Conns, "private origin")

	t.Run("dns-error", func(t *testing.T) {
		start := time.Now()
		target := "doesnotexist.onion:" + port
		resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.1", "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if ps := resp.Header.Get("Proxy-Status"); ps != "egress; error=dns_error" {
			t.Fatalf("Proxy-Status %q", ps)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("dns_error took %v", d)
		}
		p.WaitEvent(t, 5*time.Second, pxEventWith("event.reason", "dns_error", "destination.domain", "doesnotexist.onion"))
	})
}

// limits.per_source: over the limit the proxy answers 503; a slot freed is
// usable again.
func TestProxyPerSourceLimit(t *testing.T) {
	origin := NewOrigin(t, nil, nil)
	cfg := baseConfig + `
limits { per_source = 2 }
segment "lab" {
  sources = ["127.0.0.3/32"]
  default = "allow"
}
`
	p := Start(t, cfg, nil)
	port := itoa(origin.Port)
	req := "GET http://allowed.test:" + port + "/l HTTP/1.1\r\nHost: allowed.test:" + port + "\r\n\r\n"

	// Two keep-alive connections, each proven admitted by a served request.
	var held []*pxHeldConn
	for i := 0; i < 2; i++ {
		h := &pxHeldConn{c: DialFrom(t, "127.0.0.3", p.ProxyAddr)}
		h.br = pxNewReader(h.c)
		if code := h.do(t, req); code != 200 {
			t.Fatalf("connection %d: %d", i, code)
		}
		held = append(held, h)
	}
	resp, body := pxExchange(t, p.ProxyAddr, "127.0.0.3", req)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %d %s", resp.StatusCode, body)
	}
	if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "egress; error=") {
		t.Errorf("503 without Proxy-Status: %q", ps)
	}
	// Another source is not affected.
	if resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.1", req); resp.StatusCode != 200 {
		t.Fatalf("other source: %d", resp.StatusCode)
	}
	// The held connections still work.
	if code := held[1].do(t, req); code != 200 {
		t.Fatalf("held connection: %d", code)
	}
	held[0].c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := pxExchange(t, p.ProxyAddr, "127.0.0.3", req)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing a held connection: still %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
