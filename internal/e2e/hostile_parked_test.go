package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileParkedTunnels drives, through the real binary, the tunnels
// that go quiet: parked after 250 ms, then held as two bare descriptors
// (internal/tunnel, detach_linux.go) and made into connections again on the
// next byte. Keep-alive TLS tunnels go quiet and wake all at once, three
// times; a third of them then wake every 300 ms (inside the 2 s in which a
// woken tunnel is not detached again); every answer must be the right one.
// While they are quiet the proxy holds two descriptors per tunnel and no
// goroutine for them. Ten clients then vanish with a reset while their
// tunnels are quiet, and the others are still served. A reload that denies their name closes them all, as
// it does open tunnels, and the clients see the close. Then the proxy's
// descriptors and goroutines return to where they started, with no panic.
func TestHostileParkedTunnels(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "park.test")
	cfg := hxConf{Hosts: hxHosts("park.test")}
	p := Start(t, cfg.String(), nil)
	base := hxResources(t, p)

	const n = 60
	type tun struct {
		tc *tls.Conn
		br *bufio.Reader
	}
	tuns := make([]tun, n)
	for i := range tuns {
		c, _, code := Connect(t, p.ProxyAddr, "127.0.0.1", "park.test:"+strconv.Itoa(origin.Port))
		if code != 200 {
			t.Fatalf("CONNECT %d: %d", i, code)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "park.test", RootCAs: ca.Pool})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		tuns[i] = tun{tc, bufio.NewReader(tc)}
	}
	get := func(u tun, path string) error {
		u.tc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(u.tc, "GET %s HTTP/1.1\r\nHost: park.test\r\n\r\n", path); err != nil {
			return err
		}
		resp, err := http.ReadResponse(u.br, nil)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if want := "hello from park.test " + path; string(b) != want {
			return fmt.Errorf("answer %q, want %q", b, want)
		}
		return nil
	}
	// each runs f for every tunnel in parallel and fails on the first error.
	each := func(what string, f func(i int, u tun) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, u := range tuns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i, u); err != nil {
					errs <- fmt.Errorf("tunnel %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: %v", what, err)
		}
	}

	each("first request", func(i int, u tun) error { return get(u, fmt.Sprintf("/first/%d", i)) })
	for round := 0; round < 3; round++ {
		time.Sleep(700 * time.Millisecond) // parked at 250 ms, then detached
		each("wake "+strconv.Itoa(round), func(i int, u tun) error { return get(u, fmt.Sprintf("/wake%d/%d", round, i)) })
	}

	// A third wake every 300 ms for 2 s; the rest stay quiet.
	each("every 300 ms", func(i int, u tun) error {
		if i%3 != 0 {
			return nil
		}
		for k := 0; k < 7; k++ {
			time.Sleep(300 * time.Millisecond)
			if err := get(u, fmt.Sprintf("/often/%d/%d", i, k)); err != nil {
				return err
			}
		}
		return nil
	})

	// All quiet: two descriptors per tunnel (client, destination), no
	// goroutine per tunnel. Polled: the last wakes park 250 ms after them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := hxResources(t, p)
		if r.fds <= base.fds+2*n+6 && r.goroutines <= base.goroutines+8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d quiet tunnels: %v fds (start %v), %v goroutines (start %v): want at most 2 fds per tunnel and no goroutine",
				n, r.fds, base.fds, r.goroutines, base.goroutines)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Ten clients vanish while their tunnels are held as descriptors (a
	// reset, nothing sent first); the others are still served after it.
	const gone = 10
	for _, u := range tuns[:gone] {
		if tcp, ok := u.tc.NetConn().(*bufConn); ok {
			if tc, ok := tcp.Conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
		u.tc.NetConn().Close()
	}
	tuns = tuns[gone:]
	each("after the resets", func(i int, u tun) error { return get(u, fmt.Sprintf("/survivor/%d", i)) })
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := hxResources(t, p)
		if r.fds <= base.fds+2*float64(n-gone)+6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d resets: %v fds (start %v), want at most 2 per remaining tunnel", gone, r.fds, base.fds)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A reload that denies the name closes every tunnel to it, quiet or not.
	closedBefore := hxMetric(t, p, "egress_tunnels_closed_on_reload_total")
	hxReload(t, p, hxConf{Hosts: hxHosts("park.test"), Banned: []string{"park.test"}}.String())
	// /readyz shows the new version only once the reload is complete: the
	// tunnels it denies are closed by then (a client that waits for the
	// version there must not find one still open).
	if got := hxMetric(t, p, "egress_tunnels_closed_on_reload_total") - closedBefore; got < n-gone {
		t.Fatalf("/readyz shows the new version, but only %v tunnels were closed on reload, want %d", got, n-gone)
	}
	each("after the reload", func(i int, u tun) error {
		u.tc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(u.tc, "GET /after/%d HTTP/1.1\r\nHost: park.test\r\n\r\n", i)
		if resp, err := http.ReadResponse(u.br, nil); err == nil {
			resp.Body.Close()
			return fmt.Errorf("answered %d after a reload that denies its name", resp.StatusCode)
		} else if strings.Contains(err.Error(), "timeout") {
			return fmt.Errorf("not closed by the reload: %v", err)
		}
		return nil
	})
	if got := hxMetric(t, p, "egress_tunnels_closed_on_reload_total") - closedBefore; got < n-gone {
		t.Errorf("egress_tunnels_closed_on_reload_total grew by %v, want %d", got, n-gone)
	}
	for _, u := range tuns {
		u.tc.Close()
	}
	hxWaitSettled(t, p, base, 4, 6, 10*time.Second)
	hxNoPanics(t, p)
	hxNoCrashLog(t, p)
}
