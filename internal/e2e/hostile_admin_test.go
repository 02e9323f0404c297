package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestAdminConnectionFlood: clients that open connections to the admin
// listener and send nothing hold a descriptor, a goroutine and buffers
// each until the admin server's header timeout; the proxy's own
// limits.max_connections does not count them. The admin listener has caps
// of its own: 64 connections per source, 1,024 in all. One over either is
// closed at once and counted; while one source is at its cap another is
// served; while the admin listener is full the proxy still serves; the
// process's descriptors stay bounded; closed connections give their
// slots back.
func TestAdminConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,100 connections")
	}
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	p := Start(t, opsCfg("blocked.invalid", ""), nil)
	target := "other.test:" + strconv.Itoa(port)
	base := hxResources(t, p)

	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(make([]byte, 1))
		return n == 0 && err == io.EOF
	}
	getFrom := func(src, path string) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}}
		resp, err := c.Get("http://" + p.AdminAddr + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	// One source at its cap.
	var held []net.Conn
	for i := 0; i < 64; i++ {
		held = append(held, DialFrom(t, "127.0.0.3", p.AdminAddr))
	}
	time.Sleep(200 * time.Millisecond) // accepted
	if !closedAtOnce(DialFrom(t, "127.0.0.3", p.AdminAddr)) {
		t.Fatal("a 65th connection from one source was not closed at once")
	}
	if code, err := getFrom("127.0.0.2", "/readyz"); err != nil || code != 200 {
		t.Fatalf("/readyz from another source while one is at its cap: %d %v", code, err)
	}

	// The listener full: 15 more sources at their cap.
	for s := 4; s < 19; s++ {
		for i := 0; i < 64; i++ {
			held = append(held, DialFrom(t, fmt.Sprintf("127.0.0.%d", s), p.AdminAddr))
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !closedAtOnce(DialFrom(t, "127.0.0.30", p.AdminAddr)) {
		t.Fatal("a connection over the admin listener's 1,024 was not closed at once")
	}
	if code := connectCode(t, p, target); code != 200 {
		t.Fatalf("the proxy while the admin listener is full: %d", code)
	}

	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, err := getFrom("127.0.0.3", "/readyz")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin listener does not serve again after the flood: %d %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := hxMetric(t, p, `egress_connections_rejected_total{listener="admin",reason="per_source"}`); v < 1 {
		t.Fatalf("per_source rejections: %v", v)
	}
	if v := hxMetric(t, p, `egress_connections_rejected_total{listener="admin",reason="max_connections"}`); v < 1 {
		t.Fatalf("max_connections rejections: %v", v)
	}
	hxWaitSettled(t, p, base, 8, 8, 10*time.Second)
	if code := connectCode(t, p, target); code != 200 {
		t.Fatalf("the proxy after the flood: %d", code)
	}
	hxNoCrashLog(t, p)
}
