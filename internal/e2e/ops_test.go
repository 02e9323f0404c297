package e2e

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// opsConfig: reload polled every 200ms; "other.test" allowed until a test
// adds it to the social category.
const opsConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
tls { hello_timeout = "2s" }
limits {
  reload_interval = "200ms"
  shutdown_grace  = "3s"
}
upstream {
  hosts = { "allowed.test" = "127.0.0.1", "other.test" = "127.0.0.1" }
  allow_private = ["127.0.0.1/32"]
}
category "social" { domains = ["SOCIAL"] }
policy "base" {
  rule "no-social" {
    action = "deny"
    categories = ["social"]
  }
}
segment "office" {
  sources = ["127.0.0.0/8"]
  default = "allow"
  policies = ["base"]
}
`

func opsCfg(social string, extra string) string {
	return strings.Replace(opsConfig, "SOCIAL", social, 1) + extra
}

// rewrite replaces the config file (keeping the listen addresses) atomically,
// like a ConfigMap update or an editor's save.
func rewrite(t *testing.T, p *Proc, cfg string) {
	t.Helper()
	old, err := os.ReadFile(p.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`listen = "127\.0\.0\.1:\d+"`)
	addrs := re.FindAllString(string(old), -1)
	i := 0
	cfg = regexp.MustCompile(`listen = "\{\{[A-Z]+\}\}"`).ReplaceAllStringFunc(cfg, func(string) string {
		s := addrs[i]
		i++
		return s
	})
	tmp := p.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.ConfigPath); err != nil {
		t.Fatal(err)
	}
}

func connectCode(t *testing.T, p *Proc, target string) int {
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", target)
	if c != nil {
		c.Close()
	}
	return code
}

func waitCode(t *testing.T, p *Proc, target string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code := connectCode(t, p, target)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CONNECT %s: %d, want %d within %v\n%s", target, code, want, within, p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func metricValue(t *testing.T, p *Proc, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(p.Metrics(t), "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
			return v
		}
	}
	return -1
}

func TestReloadOnFileChange(t *testing.T) {
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	p := Start(t, opsCfg("blocked.invalid", ""), nil)
	target := "other.test:" + strconv.Itoa(port)
	if code := connectCode(t, p, target); code != 200 {
		t.Fatalf("before: %d", code)
	}
	rewrite(t, p, opsCfg("other.test", ""))
	waitCode(t, p, target, 403, 5*time.Second)
	if v := metricValue(t, p, `egress_config_reloads_total{result="success"}`); v < 1 {
		t.Fatalf("reloads success = %v", v)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	// Poll only every hour: the change must come from the signal.
	cfg := strings.Replace(opsCfg("blocked.invalid", ""), `reload_interval = "200ms"`, `reload_interval = "1h"`, 1)
	p := Start(t, cfg, nil)
	target := "other.test:" + strconv.Itoa(port)
	if code := connectCode(t, p, target); code != 200 {
		t.Fatalf("before: %d", code)
	}
	rewrite(t, p, strings.Replace(opsCfg("other.test", ""), `reload_interval = "200ms"`, `reload_interval = "1h"`, 1))
	time.Sleep(300 * time.Millisecond)
	if code := connectCode(t, p, target); code != 200 {
		t.Fatalf("reloaded without a signal: %d", code)
	}
	p.Signal(syscall.SIGHUP)
	waitCode(t, p, target, 403, 5*time.Second)
}

// TestReloadIntervalChangedBySIGHUP: a reload_interval changed by a
// SIGHUP reload takes effect then, not at the next poll of the old interval
// (an hour here): the next edit is picked up without a signal.
func TestReloadIntervalChangedBySIGHUP(t *testing.T) {
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	hourly := func(social string) string {
		return strings.Replace(opsCfg(social, ""), `reload_interval = "200ms"`, `reload_interval = "1h"`, 1)
	}
	p := Start(t, hourly("blocked.invalid"), nil)
	target := "other.test:" + strconv.Itoa(port)
	rewrite(t, p, opsCfg("blocked.invalid", "")) // the same rules, polled every 200ms
	p.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, p, `egress_config_reloads_total{result="success"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP reload not counted\n%s", p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rewrite(t, p, opsCfg("other.test", ""))
	waitCode(t, p, target, 403, 5*time.Second)
}

func TestInvalidConfigKeepsRunningOne(t *testing.T) {
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	p := Start(t, opsCfg("other.test", ""), nil)
	target := "other.test:" + strconv.Itoa(port)
	if code := connectCode(t, p, target); code != 403 {
		t.Fatalf("before: %d", code)
	}
	old, _ := os.ReadFile(p.ConfigPath)
	broken := strings.Replace(string(old), `default = "allow"`, `default = "perhaps"`, 1)
	broken = strings.Replace(broken, `"other.test"]`, `"nothing.invalid"]`, 1)
	if err := os.WriteFile(p.ConfigPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, p, `egress_config_reloads_total{result="failure"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("failed reload not counted\n%s", p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := connectCode(t, p, target); code != 403 {
		t.Fatalf("the broken config took effect: %d", code)
	}
	if !strings.Contains(p.Stderr(), "reload failed") || !strings.Contains(p.Stderr(), "Invalid default") {
		t.Fatalf("no diagnostics in the log:\n%s", p.Stderr())
	}
	if resp, err := http.Get("http://" + p.AdminAddr + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("not ready after a failed reload: %v", err)
	}
}

// TestReloadCutsNewlyDeniedTunnel: an open tunnel to a host the new config
// denies is closed, and the event says why.
func TestReloadCutsNewlyDeniedTunnel(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "other.test", "allowed.test")
	p := Start(t, opsCfg("blocked.invalid", ""), nil)
	open := func(name string) net.Conn {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", name+":"+strconv.Itoa(origin.Port))
		if code != 200 {
			t.Fatalf("CONNECT %s: %d", name, code)
		}
		// A TLS handshake makes the proxy decide the SNI and open the tunnel.
		if _, err := HTTPSGetKeep(c, name, ca); err != nil {
			t.Fatal(err)
		}
		return c
	}
	victim := open("other.test")
	survivor := open("allowed.test")
	rewrite(t, p, opsCfg("other.test", ""))
	victim.SetReadDeadline(time.Now().Add(8 * time.Second))
	if _, err := victim.Read(make([]byte, 1)); err == nil {
		t.Fatal("tunnel to the newly denied host still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("tunnel to the newly denied host not closed within 8s")
	}
	p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("tls.client.server_name") == "other.test" && e.Str("event.reason") == "config_reload" && e.Str("event.action") == "deny"
	})
	survivor.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := survivor.Read(make([]byte, 1)); err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("allowed tunnel was closed too: %v", err)
		}
	}
	if v := metricValue(t, p, "egress_tunnels_closed_on_reload_total"); v != 1 {
		t.Fatalf("tunnels closed on reload = %v", v)
	}
}

// TestShutdownDrainsDownload: SIGTERM makes the proxy not ready at once, a
// download in flight completes, and the process exits 0 within the grace
// period.
func TestShutdownDrainsDownload(t *testing.T) {
	const size = 4 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	_, port, _ := RawOrigin(t, func(c net.Conn) {
		defer c.Close()
		// Slow download: 4 MiB in about 1.5 s.
		for off := 0; off < size; off += size / 16 {
			c.Write(payload[off : off+size/16])
			time.Sleep(90 * time.Millisecond)
		}
	})
	cfg := opsCfg("blocked.invalid", "") + "\n"
	cfg = strings.Replace(cfg, `tls { hello_timeout = "2s" }`, `tls {
  hello_timeout = "2s"
  non_tls = "allow"
}`, 1)
	p := Start(t, cfg, nil)
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "other.test:"+strconv.Itoa(port))
	if code != 200 {
		t.Fatalf("CONNECT: %d", code)
	}
	c.Write([]byte("x")) // not TLS: tunnelled on the CONNECT decision (non_tls = allow)
	got := make(chan int, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- int(n)
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := http.Get("http://" + p.AdminAddr + "/readyz")
		if err != nil || resp.StatusCode == 503 {
			if resp != nil {
				resp.Body.Close()
			}
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still ready after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := <-got; n != size {
		t.Fatalf("download got %d of %d bytes", n, size)
	}
	select {
	case <-p.Exited():
		if p.exitErr != nil {
			t.Fatalf("exit: %v", p.exitErr)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("did not exit")
	}
	if el := time.Since(start); el > 3*time.Second+2*time.Second {
		t.Fatalf("exit took %v, grace is 3s", el)
	}
	if _, err := net.DialTimeout("tcp", p.ProxyAddr, time.Second); err == nil {
		t.Fatal("proxy still accepting after shutdown")
	}
}

// TestShutdownGraceCutsStragglers: a tunnel that outlives the grace period
// is closed, and the process still exits 0.
func TestShutdownGraceCutsStragglers(t *testing.T) {
	_, port, _ := RawOrigin(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c) // holds the tunnel open until the proxy closes it
	})
	cfg := strings.Replace(opsCfg("blocked.invalid", ""), `tls { hello_timeout = "2s" }`, `tls {
  hello_timeout = "2s"
  non_tls = "allow"
}`, 1)
	p := Start(t, cfg, nil)
	c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "other.test:"+strconv.Itoa(port))
	if code != 200 {
		t.Fatalf("CONNECT: %d", code)
	}
	c.Write([]byte("x"))
	idle := DialFrom(t, "127.0.0.1", p.ProxyAddr) // an idle keep-alive connection
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.Signal(syscall.SIGTERM)
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection got data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle keep-alive connection not closed at once on SIGTERM")
	}
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit")
	}
	el := time.Since(start)
	if el < 2500*time.Millisecond || el > 6*time.Second {
		t.Fatalf("exit after %v; grace is 3s", el)
	}
	if p.exitErr != nil {
		t.Fatalf("exit: %v", p.exitErr)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("straggler tunnel still open")
	}
}

func TestMaxConnections(t *testing.T) {
	p := Start(t, strings.Replace(opsCfg("blocked.invalid", ""), "limits {", "limits {\n  max_connections = 3", 1), nil)
	var held []net.Conn
	for i := 0; i < 3; i++ {
		held = append(held, DialFrom(t, "127.0.0."+strconv.Itoa(10+i), p.ProxyAddr))
	}
	time.Sleep(200 * time.Millisecond)
	c := DialFrom(t, "127.0.0.20", p.ProxyAddr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 503") || !strings.Contains(string(b), "Proxy-Status: egress; error=connection_limit_reached") {
		t.Fatalf("over the limit: %q", b)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := DialFrom(t, "127.0.0.21", p.ProxyAddr)
		c.Write([]byte("GET http://allowed.test:1/ HTTP/1.1\r\nHost: allowed.test:1\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 12)
		io.ReadFull(c, line)
		c.Close()
		if !strings.HasPrefix(string(line), "HTTP/1.1 503") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("limit did not recover after a connection closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := metricValue(t, p, `egress_connections_rejected_total{listener="proxy",reason="max_connections"}`); v < 1 {
		t.Fatalf("rejections = %v", v)
	}
}

// TestReloadWaitsForWriter: a list file rewritten in place, in pieces (as
// an editor, `git checkout` or a copy does), is loaded once it is whole.
// The name the old list denies is also the new list's last: a reload of the
// file half-written would allow it for a poll interval. Every CONNECT to it
// during the write is denied, and the new list is in force after.
func TestReloadWaitsForWriter(t *testing.T) {
	testReloadWaitsForWriter(t, false)
}

// TestReloadSIGHUPWaitsForWriter: the same write, with the poll an hour
// apart and a SIGHUP after every piece: a SIGHUP waits for the files to
// keep still as the poll does.
func TestReloadSIGHUPWaitsForWriter(t *testing.T) {
	testReloadWaitsForWriter(t, true)
}

func testReloadWaitsForWriter(t *testing.T, sighup bool) {
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	cfg := strings.Replace(opsCfg("unused.invalid", ""), `category "social" { domains = ["unused.invalid"] }`,
		`category "social" { files = ["list.txt"] }`, 1)
	cfg = strings.Replace(cfg, `"other.test" = "127.0.0.1"`, `"other.test" = "127.0.0.1", "tiktok.test" = "127.0.0.1"`, 1)
	if sighup {
		cfg = strings.Replace(cfg, `reload_interval = "200ms"`, `reload_interval = "1h"`, 1)
	}
	p := Start(t, cfg, map[string]string{"list.txt": "tiktok.test\n"})
	target := "tiktok.test:" + strconv.Itoa(port)
	if code := connectCode(t, p, target); code != 403 {
		t.Fatalf("before: %d", code)
	}
	list := filepath.Join(filepath.Dir(p.ConfigPath), "list.txt")
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(list, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		for i := 0; i < 40; i++ {
			var b strings.Builder
			for j := 0; j < 200; j++ {
				fmt.Fprintf(&b, "n%02d-%03d.filler.test\n", i, j)
			}
			if _, err := f.WriteString(b.String()); err != nil {
				done <- err
				return
			}
			if sighup {
				p.Signal(syscall.SIGHUP)
			}
			time.Sleep(20 * time.Millisecond) // well under the 200ms the files must keep still
		}
		_, err = f.WriteString("tiktok.test\n")
		if sighup {
			p.Signal(syscall.SIGHUP)
		}
		done <- err
	}()
	var writeErr error
	var allowed []int
	deadline := time.Now().Add(30 * time.Second)
	for finished := false; !finished; {
		select {
		case writeErr = <-done:
			finished = true
		default:
		}
		if code := connectCode(t, p, target); code != 403 {
			allowed = append(allowed, code)
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not finish in 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	waitCode(t, p, "n39-199.filler.test:"+strconv.Itoa(port), 403, 5*time.Second)
	for i := 0; i < 5; i++ {
		if code := connectCode(t, p, target); code != 403 {
			allowed = append(allowed, code)
		}
	}
	if len(allowed) > 0 {
		t.Fatalf("a CONNECT to the name both lists deny was answered %v: a half-written list was loaded\n%s", allowed, p.Stderr())
	}
	if v := metricValue(t, p, `egress_config_reloads_total{result="failure"}`); v != 0 {
		t.Fatalf("reload failures: %v", v)
	}
}
