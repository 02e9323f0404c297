package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMetricsShowDecisions scrapes /metrics from the running binary and finds
// the decisions it just caused.
func TestMetricsShowDecisions(t *testing.T) {
	p := Start(t, baseConfig, nil)
	for i := 0; i < 3; i++ {
		connectCode(t, p, "www.tiktok.com:443")
	}
	m := p.Metrics(t)
	want := `egress_decisions_total{action="deny",listener="proxy",reason="rule",rule="no-social",segment="office"} 3`
	if !strings.Contains(m, want) {
		t.Fatalf("no %s in\n%s", want, grepLines(m, "egress_decisions_total"))
	}
	for _, name := range []string{"egress_active_connections", "egress_bytes_total", "egress_client_hello_seconds_bucket",
		"egress_upstream_dial_seconds_bucket", "egress_config_reloads_total", "egress_config_last_reload_success_timestamp_seconds",
		"egress_log_events_dropped_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(m, "\n"+name) {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := metricValue(t, p, "egress_config_last_reload_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last reload timestamp %v", v)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// syslogServer accepts RFC 6587 octet-counted frames on TCP and counts them.
type syslogServer struct {
	ln    net.Listener
	conns []net.Conn
	mu    sync.Mutex
	msgs  []string
	count atomic.Int64
}

func startSyslog(t *testing.T, addr string) *syslogServer {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger after a previous close
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &syslogServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.read(c)
		}
	}()
	return s
}

func (s *syslogServer) read(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(lenStr))
		if err != nil || n <= 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, string(buf))
		s.mu.Unlock()
		s.count.Add(1)
	}
}

// close stops the listener and drops every connection: the SIEM is gone.
func (s *syslogServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// TestSyslogSinkDownTrafficFlows: events go to a syslog TCP listener; the
// listener dies mid-load; traffic keeps flowing, drops are counted, and
// delivery resumes when the listener returns.
func TestSyslogSinkDownTrafficFlows(t *testing.T) {
	sysAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	srv := startSyslog(t, sysAddr)
	cfg := strings.Replace(baseConfig, `tls { hello_timeout = "2s" }`, `tls { hello_timeout = "2s" }
log {
  format = "cef"
  output = "syslog+tcp://`+sysAddr+`"
  queue_size = 16
}`, 1)
	p := Start(t, cfg, nil)
	deny := func(n int) {
		for i := 0; i < n; i++ {
			start := time.Now()
			if code := connectCode(t, p, "www.tiktok.com:443"); code != 403 {
				t.Fatalf("CONNECT during SIEM outage: %d", code)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("a decision took %v while the SIEM was down", el)
			}
		}
	}
	deny(5)
	waitFor(t, 5*time.Second, func() bool { return srv.count.Load() >= 5 }, "events at the syslog listener")
	srv.mu.Lock()
	first := srv.msgs[0]
	srv.mu.Unlock()
	if !regexp.MustCompile(`^<132>1 \S+ \S+ egress \d+ deny - CEF:0\|egress\|egress\|[^|]+\|rule\|deny www\.tiktok\.com`).MatchString(first) {
		t.Fatalf("syslog frame %q", first)
	}
	srv.close()
	deny(200) // far more than the queue holds
	waitFor(t, 10*time.Second, func() bool {
		return metricValue(t, p, "egress_log_events_dropped_total") > 0
	}, "dropped events counted")
	srv2 := startSyslog(t, sysAddr)
	defer srv2.close()
	waitFor(t, 40*time.Second, func() bool {
		deny(1)
		return srv2.count.Load() > 0
	}, "delivery resumed after the listener returned")
	if !strings.Contains(p.Stderr(), "syslog") {
		t.Logf("process log:\n%s", p.Stderr())
	}
}

func waitFor(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFileSinkReopenOnSIGHUP: log to a file; after logrotate renames it and
// sends SIGHUP, new events go to a new file at the same path.
func TestFileSinkReopenOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.log")
	cfg := strings.Replace(baseConfig, `tls { hello_timeout = "2s" }`, `tls { hello_timeout = "2s" }
log { output = "file:`+path+`" }`, 1)
	p := Start(t, cfg, nil)
	connectCode(t, p, "www.tiktok.com:443")
	waitFor(t, 5*time.Second, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "www.tiktok.com") }, "first event in the file")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	connectCode(t, p, "blocked.test:443")
	waitFor(t, 5*time.Second, func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "blocked.test") }, "event in the reopened file")
	if b, _ := os.ReadFile(path + ".1"); strings.Contains(string(b), "blocked.test") {
		t.Fatal("event written to the rotated file")
	}
}
