package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Figures for the plain-HTTP forwarding path (not assertions: the tests that
// assert live in hostile_*_test.go and internal/proxy). Run with
//
//	EGRESS_MEASURE=1 go test ./internal/e2e -run TestMeasureHTTP -v
//
// and, for the figures of another build, EGRESS_E2E_BINARY=/path/to/egress.

func measureOnly(t *testing.T) {
	if os.Getenv("EGRESS_MEASURE") == "" {
		t.Skip("measurement only: set EGRESS_MEASURE=1")
	}
}

const measureCfg = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
limits {
  per_source      = 5000
  max_connections = 20000
  idle_timeout    = "5m"
}
upstream {
  allow_private = ["127.0.0.0/8"]
  hosts = { %s }
}
segment "loopback" {
  sources = ["127.0.0.0/8"]
  default = "allow"
}
`

// Defect 2: 3,000 requests on one client connection to spellings of one name
// and to many names of one address. Before: one upstream connection (and two
// goroutines) each.
func TestMeasureHTTPUpstreamPerClient(t *testing.T) {
	measureOnly(t)
	_, port, _ := measureOrigin(t)
	var hosts []string
	for i := 0; i < 1000; i++ {
		hosts = append(hosts, fmt.Sprintf(`"w%d.wild.test" = "127.0.0.1"`, i))
	}
	hosts = append(hosts, `"allowed.test" = "127.0.0.1"`)
	p := Start(t, fmt.Sprintf(measureCfg, strings.Join(hosts, ", ")), nil)
	fds0, gr0 := metricValue(t, p, "process_open_fds"), metricValue(t, p, "go_goroutines")
	c, err := net.Dial("tcp", p.ProxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	br := bufio.NewReader(c)
	spell := []string{"allowed.test", "AlLoWeD.test", "allowed.test.", "ALLOWED.TEST"}
	var maxFDs, maxGR float64
	for i := 0; i < 3000; i++ {
		name := spell[i%len(spell)]
		if i%2 == 1 {
			name = fmt.Sprintf("w%d.wild.test", i/2%1000)
		}
		fmt.Fprintf(c, "GET http://%s:%d/%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", name, port, i, name, port)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if i%250 == 249 {
			maxFDs = max(maxFDs, metricValue(t, p, "process_open_fds"))
			maxGR = max(maxGR, metricValue(t, p, "go_goroutines"))
		}
	}
	c.Close()
	time.Sleep(2 * time.Second)
	t.Logf("defect 2: fds %.0f → max %.0f during → %.0f after; goroutines %.0f → max %.0f during → %.0f after",
		fds0, maxFDs, metricValue(t, p, "process_open_fds"), gr0, maxGR, metricValue(t, p, "go_goroutines"))
}

// Defect 10: RSS per idle keep-alive connection after one request with a
// 45 KB header, against one with a 200-byte header.
func TestMeasureHTTPIdleKeepAlive(t *testing.T) {
	measureOnly(t)
	const n = 2000
	_, port, _ := measureOrigin(t)
	for _, size := range []int{200, 45 << 10} {
		p := Start(t, fmt.Sprintf(measureCfg, `"allowed.test" = "127.0.0.1"`), nil)
		pid := p.cmd.Process.Pid
		rss0 := procStatus(t, pid, "VmRSS")
		pad := strings.Repeat("p", size)
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", p.ProxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\r\nX-Pad: %s\r\n\r\n", port, port, pad)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			conns = append(conns, c)
		}
		time.Sleep(time.Second)
		rss := procStatus(t, pid, "VmRSS")
		t.Logf("defect 10: %d idle keep-alive connections after a %d-byte header: RSS %.1f → %.1f MB (%.1f KB each); fds %.0f",
			n, size, float64(rss0)/1e6, float64(rss)/1e6, float64(rss-rss0)/n/1e3, metricValue(t, p, "process_open_fds"))
		for _, c := range conns {
			c.Close()
		}
		p.Stop(10 * time.Second)
	}
}

// measureOrigin is a keep-alive HTTP origin on loopback.
func measureOrigin(t *testing.T) (string, int, *http.Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port, srv
}
