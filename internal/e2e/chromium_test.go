package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Headless Chromium (Debian's chromium package) as the user's browser, through
// egress's PAC file and through a fixed --proxy-server: an allowed HTTPS page
// loads from a loopback origin, a denied HTTPS host fails with the browser's
// own error page (no block page is possible inside TLS), and a denied plain
// HTTP page shows egress's block page with its event id.
//
// Network: Chromium resolves nothing (--host-resolver-rules maps every name
// but the literal 127.0.0.1 to NOTFOUND; the proxy and the PAC URL are
// 127.0.0.1) and sends everything to
// egress on 127.0.0.1; egress maps the test names to 127.0.0.1 and its segment
// default is deny, so Chromium's own background requests are refused before
// any DNS lookup.

const chromiumConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
upstream {
  hosts = {
    "allowed.test"   = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["tiktok.com"] }
segment "office" {
  sources = ["127.0.0.1/32"]
  default = "deny"
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
  rule "test-origins" {
    action  = "allow"
    domains = ["allowed.test"]
  }
}
`

func chromiumBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIP: chromium not installed (apt-get install chromium; .ci/run does): the browser test did NOT run")
	return ""
}

// browserOrigin is a loopback HTTP(S) server whose page names itself, counting
// the requests it serves.
type browserOrigin struct {
	port int
	hits atomic.Int64
	spki string // base64 SHA-256 of the leaf's public key (TLS only)
}

func newBrowserOrigin(t *testing.T, ca *CA, name string) *browserOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &browserOrigin{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>origin %s</title></head><body><p id=\"origin\">hello from the origin %s</p></body></html>", name, name)
	})}
	if ca != nil {
		leaf := ca.Leaf(t, name)
		cert, err := x509.ParseCertificate(leaf.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		o.spki = base64.StdEncoding.EncodeToString(sum[:])
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf}}
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
	t.Cleanup(func() { srv.Close() })
	return o
}

// dumpDOM runs headless Chromium on url and returns the DOM it ends with
// (empty when the load failed) and the page-load error Chromium reports.
func dumpDOM(t *testing.T, bin string, proxyArg string, spki []string, url string) (dom, loadErr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
		"--disable-features=MediaRouter,OptimizationHints,Translate,AutofillServerCommunication,InterestFeedContentSuggestions",
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--user-data-dir=" + t.TempDir(),
		proxyArg,
		"--ignore-certificate-errors-spki-list=" + strings.Join(spki, ","),
		"--virtual-time-budget=5000",
		"--dump-dom", url,
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chromium did not finish %s within 90s\nstderr:\n%s", url, stderr.String())
	}
	if err != nil {
		t.Logf("chromium %s: %v\nstderr:\n%s", url, err, stderr.String())
	}
	// "Page load failed: net::ERR_TUNNEL_CONNECTION_FAILED"
	for _, l := range strings.Split(stderr.String(), "\n") {
		if i := strings.Index(l, "Page load failed: "); i >= 0 {
			loadErr = strings.TrimSpace(l[i+len("Page load failed: "):])
		}
	}
	return stdout.String(), loadErr
}

func TestChromiumThroughEgress(t *testing.T) {
	bin := chromiumBinary(t)
	ca := NewCA(t)
	allowed := newBrowserOrigin(t, ca, "allowed.test")
	deniedTLS := newBrowserOrigin(t, ca, "www.tiktok.com")
	deniedPlain := newBrowserOrigin(t, nil, "www.tiktok.com")
	p := Start(t, chromiumConfig, nil)
	spki := []string{allowed.spki, deniedTLS.spki}

	// The PAC file the browser will fetch names this proxy.
	pac := httpGetBody(t, "http://"+p.AdminAddr+"/proxy.pac")
	if !strings.Contains(pac, "PROXY "+p.ProxyAddr) {
		t.Fatalf("PAC file does not point at %s:\n%s", p.ProxyAddr, pac)
	}

	for _, mode := range []struct{ name, arg string }{
		{"pac", "--proxy-pac-url=http://" + p.AdminAddr + "/proxy.pac"},
		{"proxy-server", "--proxy-server=http://" + p.ProxyAddr},
	} {
		t.Run(mode.name, func(t *testing.T) {
			// An allowed HTTPS page loads, through a CONNECT tunnel.
			before := allowed.hits.Load()
			dom, loadErr := dumpDOM(t, bin, mode.arg, spki, fmt.Sprintf("https://allowed.test:%d/", allowed.port))
			if !strings.Contains(dom, "hello from the origin allowed.test") || allowed.hits.Load() == before {
				t.Fatalf("allowed HTTPS page did not load (%s); DOM:\n%s\negress events:\n%v", loadErr, dom, p.Events())
			}
			p.WaitEvent(t, 10*time.Second, pxEventWith("destination.domain", "allowed.test", "event.action", "allow",
				"tls.client.server_name", "allowed.test"))

			// A denied HTTPS host fails: the browser's error page, no origin contact.
			dom, loadErr = dumpDOM(t, bin, mode.arg, spki, fmt.Sprintf("https://www.tiktok.com:%d/", deniedTLS.port))
			if strings.Contains(dom, "hello from the origin") || deniedTLS.hits.Load() != 0 {
				t.Fatalf("denied HTTPS host reached its origin; DOM:\n%s", dom)
			}
			if loadErr != "net::ERR_TUNNEL_CONNECTION_FAILED" {
				t.Errorf("Chromium's load error for a denied CONNECT is %q, want net::ERR_TUNNEL_CONNECTION_FAILED", loadErr)
			}
			p.WaitEvent(t, 10*time.Second, pxEventWith("destination.domain", "www.tiktok.com", "event.action", "deny",
				"rule.name", "no-social", "http.request.method", "CONNECT"))

			// A denied plain-HTTP page shows egress's block page, with the event id.
			dom, loadErr = dumpDOM(t, bin, mode.arg, spki, fmt.Sprintf("http://www.tiktok.com:%d/watch", deniedPlain.port))
			if deniedPlain.hits.Load() != 0 {
				t.Fatalf("denied plain-HTTP host reached its origin")
			}
			for _, want := range []string{"Blocked by egress policy", "no-social", "office", "Event id"} {
				if !strings.Contains(dom, want) {
					t.Fatalf("block page: no %q in the DOM (load error %q):\n%s", want, loadErr, dom)
				}
			}
			// The id on the page is the id of this request's deny event.
			match := pxEventWith("url.domain", "www.tiktok.com", "url.path", "/watch", "event.action", "deny")
			p.WaitEvent(t, 10*time.Second, func(e Event) bool {
				return match(e) && e.Str("event.id") != "" && strings.Contains(dom, e.Str("event.id"))
			})
		})
	}
	// Whatever else Chromium asked for was refused by the segment default,
	// which decides before any DNS lookup: egress resolved nothing.
	for _, e := range p.Events() {
		if d := e.Str("destination.domain"); e.Str("event.action") == "allow" && d != "allowed.test" {
			t.Errorf("egress allowed (and so resolved) %q for Chromium", d)
		}
	}
}

func httpGetBody(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
