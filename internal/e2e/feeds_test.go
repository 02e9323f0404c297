package e2e

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// feedOrigin is a local HTTPS list feed (names feeds.example) with an ETag
// and a detached Ed25519 signature at /intel.txt.sig.
type feedOrigin struct {
	*Origin
	mu      sync.Mutex
	body    string
	sig     string
	status  int
	priv    ed25519.PrivateKey
	fetches atomic.Int64 // list requests answered 200
	not     atomic.Int64 // list requests answered 304
}

func newFeedOrigin(t *testing.T, ca *CA, priv ed25519.PrivateKey) *feedOrigin {
	f := &feedOrigin{priv: priv}
	f.Origin = NewOrigin(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		body, sig, status := f.body, f.sig, f.status
		f.mu.Unlock()
		switch {
		case status != 0:
			w.WriteHeader(status)
		case r.URL.Path == "/intel.txt.sig":
			io.WriteString(w, sig)
		case r.URL.Path == "/intel.txt":
			etag := fmt.Sprintf("\"%x\"", sha256.Sum256([]byte(body)))
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				f.not.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			f.fetches.Add(1)
			io.WriteString(w, body)
		default:
			http.NotFound(w, r)
		}
	}), "feeds.example")
	return f
}

// serve publishes body, signed with the feed key (or with other, a key the
// config does not trust).
func (f *feedOrigin) serve(body string, signer ed25519.PrivateKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body, f.status = body, 0
	f.sig = base64.StdEncoding.EncodeToString(ed25519.Sign(signer, []byte(body)))
}

func (f *feedOrigin) fail(status int) {
	f.mu.Lock()
	f.status = status
	f.mu.Unlock()
}

// waitMetric polls a series until ok accepts its value.
func waitMetric(t *testing.T, p *Proc, series string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, have := hxMetrics(t, p)[series]
		if have && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (exported %t), not as expected within 15s\n%s", series, v, have, p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

// connectStatus is the CONNECT status for target from 127.0.0.2.
func connectStatus(t *testing.T, p *Proc, target string) int {
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target)
	if c != nil {
		c.Close()
	}
	return code
}

const feedConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
log   { output = "stdout" }
limits {
  reload_interval   = "1h"   # the feed's own update triggers the reload
  enforce_on_reload = true
}
upstream {
  hosts         = { "feeds.example" = "127.0.0.1", "bad.example" = "127.0.0.1", "good.example" = "127.0.0.1",
                    "refused.example" = "127.0.0.3" }
  allow_private = ["127.0.0.1/32"]
}
category "intel" {
  feeds = [{ url = "https://feeds.example:{{FEED}}/intel.txt", refresh = "1s", ca_file = "ca.pem",
             cache_dir = "{{CACHE}}", public_key = "{{KEY}}", max_shrink = 0.5 }]
}
category "refused" {
  feeds = [{ url = "https://refused.example:{{REFUSED}}/x.txt", refresh = "1s", name = "refused", ca_file = "ca.pem",
             cache_dir = "{{CACHE}}" }]
}
segment "all" {
  sources = ["127.0.0.0/8"]
  default = "allow"
  rule "no-intel" {
    action     = "deny"
    categories = ["intel", "refused"]
  }
}
`

// TestFeedLifecycle runs a live list feed against a local HTTPS feed server:
// first fetch, an update that cuts an open tunnel it now denies, 304s, a bad
// signature, the shrink guard, an outage (each a failure that keeps the last
// good list), a feed whose host is a refused destination (never dialed), and
// a restart without the feed server that enforces the cached copy.
func TestFeedLifecycle(t *testing.T) {
	ca := NewCA(t)
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, untrusted, _ := ed25519.GenerateKey(nil)
	feed := newFeedOrigin(t, ca, priv)
	feed.serve("other.example\nthird.example\n", priv)
	app := NewOrigin(t, ca, nil, "bad.example", "good.example")
	// A listener on 127.0.0.3 (loopback): the refused feed's host maps here,
	// outside allow_private; it must never see a connection.
	refusedLn, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Skipf("127.0.0.3 not usable: %v", err)
	}
	defer refusedLn.Close()
	var refusedConns atomic.Int64
	go func() {
		for {
			c, err := refusedLn.Accept()
			if err != nil {
				return
			}
			refusedConns.Add(1)
			c.Close()
		}
	}()
	cache := t.TempDir()
	cfg := strings.NewReplacer("{{FEED}}", fmt.Sprint(feed.Port), "{{CACHE}}", cache,
		"{{KEY}}", base64.StdEncoding.EncodeToString(pub),
		"{{REFUSED}}", fmt.Sprint(refusedLn.Addr().(*net.TCPAddr).Port)).Replace(feedConfig)
	files := map[string]string{"ca.pem": string(ca.PEM)}
	p := Start(t, cfg, files)

	const (
		entries = `egress_feed_entries{feed="intel/1"}`
		success = `egress_feed_updates_total{feed="intel/1",result="success"}`
		notMod  = `egress_feed_updates_total{feed="intel/1",result="not_modified"}`
		failure = `egress_feed_updates_total{feed="intel/1",result="failure"}`
		last    = `egress_feed_last_success_timestamp_seconds{feed="intel/1"}`
	)
	bad := fmt.Sprintf("bad.example:%d", app.Port)
	good := fmt.Sprintf("good.example:%d", app.Port)

	// First fetch (no cache yet): the list is fetched, cached and in force.
	waitMetric(t, p, entries, func(v float64) bool { return v == 2 })
	if v := hxMetric(t, p, success); v != 1 {
		t.Fatalf("success = %v", v)
	}
	if v := hxMetric(t, p, last); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success %v", v)
	}
	if code := connectStatus(t, p, bad); code != 200 {
		t.Fatalf("bad.example before the update: %d", code)
	}

	// 304: the unchanged list is not fetched again.
	waitMetric(t, p, notMod, atLeast(2))
	if n := feed.fetches.Load(); n != 1 {
		t.Fatalf("the list was fetched %d times with an unchanged ETag", n)
	}

	// An update that lists bad.example: swapped in like a reload, the open
	// tunnel to bad.example is cut (enforce_on_reload), new ones are denied,
	// others keep working.
	open := func(target, sni string) net.Conn {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.2", target)
		if code != 200 {
			t.Fatalf("CONNECT %s: %d", target, code)
		}
		// A TLS handshake makes the proxy decide the SNI and open the tunnel.
		if _, err := HTTPSGetKeep(c, sni, ca); err != nil {
			t.Fatal(err)
		}
		return c
	}
	tun := open(bad, "bad.example")
	defer tun.Close()
	keep := open(good, "good.example")
	defer keep.Close()
	feed.serve("other.example\nthird.example\nbad.example\nfourth.example\n", priv)
	waitMetric(t, p, entries, func(v float64) bool { return v == 4 })
	tun.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tun.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the tunnel to bad.example was not cut by the feed update: %v", err)
	}
	if code := connectStatus(t, p, bad); code != 403 {
		t.Fatalf("bad.example after the update: %d", code)
	}
	keep.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := keep.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the tunnel to good.example was cut: %v", err)
	}
	p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("tls.client.server_name") == "bad.example" && e.Str("event.reason") == "config_reload" && e.Str("event.action") == "deny"
	})
	if v := hxMetric(t, p, "egress_tunnels_closed_on_reload_total"); v != 1 {
		t.Fatalf("tunnels closed on reload = %v", v)
	}
	if !strings.Contains(p.Stderr(), `trigger="feed update"`) {
		t.Fatalf("no reload by the feed:\n%s", p.Stderr())
	}

	// Failures: each is counted and keeps the last good list (bad.example
	// stays denied, entries stay 4).
	steps := []struct {
		name string
		do   func()
	}{
		{"bad signature", func() { feed.serve("other.example\nthird.example\nfourth.example\nfifth.example\n", untrusted) }},
		{"shrink", func() { feed.serve("other.example\n", priv) }},
		{"outage", func() { feed.fail(http.StatusServiceUnavailable) }},
	}
	for _, s := range steps {
		f0 := hxMetric(t, p, failure)
		s.do()
		waitMetric(t, p, failure, atLeast(f0+1))
		if v := hxMetric(t, p, entries); v != 4 {
			t.Fatalf("%s: entries %v", s.name, v)
		}
		if code := connectStatus(t, p, bad); code != 403 {
			t.Fatalf("%s: bad.example now %d: a failed update removed a ban", s.name, code)
		}
	}
	if !strings.Contains(p.Stderr(), "signature") || !strings.Contains(p.Stderr(), "shrink guard") {
		t.Fatalf("failures not logged:\n%s", p.Stderr())
	}

	// The feed whose host is a refused destination: failures, never dialed.
	waitMetric(t, p, `egress_feed_updates_total{feed="refused",result="failure"}`, atLeast(1))
	if n := refusedConns.Load(); n != 0 {
		t.Fatalf("the refused feed host got %d connections", n)
	}
	if !strings.Contains(p.Stderr(), "prohibited") {
		t.Fatalf("refusal not logged:\n%s", p.Stderr())
	}

	// Restart with the feed server down: the cached copy is enforced at once.
	tun.Close()
	keep.Close()
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	feed.Origin.srv.Close()
	p2 := Start(t, cfg, files)
	if code := connectStatus(t, p2, bad); code != 403 {
		t.Fatalf("after a restart without the feed: bad.example %d", code)
	}
	if v := hxMetric(t, p2, entries); v != 4 {
		t.Fatalf("after restart: entries %v", v)
	}
	if v := hxMetric(t, p2, last); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("after restart: last success %v, want the cache's time", v)
	}
	waitMetric(t, p2, failure, atLeast(1))
	if code := connectStatus(t, p2, bad); code != 403 {
		t.Fatalf("after a failed update on restart: bad.example %d", code)
	}
	if _, err := os.Stat(filepath.Join(cache)); err != nil {
		t.Fatal(err)
	}
}
