package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
)

// fakeState is a State whose answer the test changes.
type fakeState struct {
	mu      sync.Mutex
	ok      bool
	version string
	why     string
}

func (s *fakeState) Ready() (bool, string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.version, s.why
}

func (s *fakeState) set(ok bool, version, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok, s.version, s.why = ok, version, why
}

// server is a running admin listener on loopback.
type server struct {
	addr   string
	client *http.Client
	state  *fakeState
	pac    *PACConfig
	pacMu  *sync.Mutex
}

func startServer(t *testing.T, pprof bool) *server {
	t.Helper()
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	m.InitDecisions(audit.Listeners, []string{"ministry"}, []metrics.RuleLabel{{Segment: "ministry", Rule: "no-social-media", Action: metrics.ActionDeny}})
	m.ConfigLoaded(true, "abc123", time.Now())
	m.Decision(audit.ListenerProxy, "ministry", metrics.ActionDeny, metrics.ReasonRule, "no-social-media")

	s := &server{
		state: &fakeState{},
		pac:   &PACConfig{ProxyPort: 3128, DirectSuffixes: []string{"corp.example", `a"b`}, DirectCIDRs: []string{"10.0.0.0/8"}},
		pacMu: &sync.Mutex{},
	}
	h := Handler(Options{
		Gatherer: reg,
		State:    s.state,
		PAC: func() PACConfig {
			s.pacMu.Lock()
			defer s.pacMu.Unlock()
			return *s.pac
		},
		Pprof: pprof,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return s
}

func (s *server) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := s.client.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestServeEndpoints(t *testing.T) {
	s := startServer(t, false)

	t.Run("metrics", func(t *testing.T) {
		code, _, body := s.get(t, PathMetrics)
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		for _, want := range []string{
			`egress_decisions_total{action="deny",listener="proxy",reason="rule",rule="no-social-media",segment="ministry"} 1`,
			`egress_decisions_total{action="allow",listener="transparent_https",reason="default",rule="",segment="ministry"} 0`,
			`egress_bytes_total{direction="upload"} 0`,
			`egress_config_reloads_total{result="failure"} 0`,
			`egress_config_info{version="abc123"} 1`,
			`egress_log_events_dropped_total 0`,
			`egress_client_hello_seconds_bucket{le="+Inf"} 0`,
			"go_goroutines ",
			"process_cpu_seconds_total ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		promtoolCheckMetrics(t, body)
	})

	t.Run("healthz", func(t *testing.T) {
		code, _, body := s.get(t, PathHealthz)
		if code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz = %d %q", code, body)
		}
	})

	t.Run("readyz", func(t *testing.T) {
		code, _, body := s.get(t, PathReadyz)
		if code != http.StatusServiceUnavailable || body != "not ready: starting\n" {
			t.Errorf("/readyz before load = %d %q", code, body)
		}
		s.state.set(true, "abc123", "")
		code, _, body = s.get(t, PathReadyz)
		if code != http.StatusOK || body != "ready config_version=abc123\n" {
			t.Errorf("/readyz ready = %d %q", code, body)
		}
		s.state.set(false, "abc123", "shutting down")
		code, _, body = s.get(t, PathReadyz)
		if code != http.StatusServiceUnavailable || body != "not ready: shutting down\n" {
			t.Errorf("/readyz shutting down = %d %q", code, body)
		}
		// Liveness is unaffected by readiness.
		if code, _, _ := s.get(t, PathHealthz); code != http.StatusOK {
			t.Errorf("/healthz while not ready = %d", code)
		}
	})

	t.Run("proxy.pac", func(t *testing.T) {
		code, hdr, body := s.get(t, PathPAC)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		if ct := hdr.Get("Content-Type"); ct != PACContentType {
			t.Errorf("Content-Type = %q", ct)
		}
		if !strings.Contains(body, "function FindProxyForURL(url, host)") {
			t.Error("no FindProxyForURL")
		}
		// Derived from the request's Host (127.0.0.1:port) and the proxy port.
		proxy, suffixes, _ := pacData(t, body)
		if proxy != "PROXY 127.0.0.1:3128" {
			t.Errorf("proxy = %q", proxy)
		}
		if len(suffixes) != 2 || suffixes[1] != `a"b` || !strings.Contains(body, `"a\"b"`) {
			t.Errorf("hostile suffix not escaped: %q", suffixes)
		}
		// A reload changes the PAC on the next request.
		s.pacMu.Lock()
		s.pac.ProxyAddr = "proxy.corp.example:8080"
		s.pacMu.Unlock()
		_, _, body = s.get(t, PathPAC)
		if proxy, _, _ := pacData(t, body); proxy != "PROXY proxy.corp.example:8080" {
			t.Errorf("after reload proxy = %q", proxy)
		}
	})

	t.Run("proxy.pac hostile Host", func(t *testing.T) {
		s.pacMu.Lock()
		s.pac.ProxyAddr = ""
		s.pacMu.Unlock()
		for _, host := range []string{"evil.example;DIRECT", "a(b)", "x'y"} {
			status := rawGet(t, s.addr, PathPAC, host)
			if status != "HTTP/1.1 400 Bad Request" {
				t.Errorf("Host %q: %s, want 400", host, status)
			}
		}
	})

	t.Run("pprof disabled", func(t *testing.T) {
		if code, _, _ := s.get(t, PathPprof); code != http.StatusNotFound {
			t.Errorf("/debug/pprof/ = %d, want 404", code)
		}
	})

	t.Run("method", func(t *testing.T) {
		resp, err := s.client.Post("http://"+s.addr+PathHealthz, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
		}
	})
}

func TestPprofEnabled(t *testing.T) {
	s := startServer(t, true)
	code, _, body := s.get(t, PathPprof)
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d", code)
	}
	if code, _, _ := s.get(t, PathPprof+"goroutine?debug=1"); code != http.StatusOK {
		t.Errorf("/debug/pprof/goroutine = %d", code)
	}
}

func TestNoPACNoState(t *testing.T) {
	h := Handler(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	}()
	for path, want := range map[string]string{PathPAC: "HTTP/1.1 404 Not Found", PathReadyz: "HTTP/1.1 503 Service Unavailable", PathMetrics: "HTTP/1.1 404 Not Found"} {
		if got := rawGet(t, ln.Addr().String(), path, "127.0.0.1"); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
}

func TestServeListenerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, http.NotFoundHandler())
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve on a closed listener = %v, want an error", err)
	}
}

// rawGet sends a GET with an arbitrary Host header and returns the status line.
func rawGet(t *testing.T, addr, path, host string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(line, "\r\n")
}

// promtoolCheckMetrics runs `promtool check metrics` on an exposition when
// promtool is installed (Debian package "prometheus").
func promtoolCheckMetrics(t *testing.T, exposition string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed; names checked by testutil lint in internal/metrics")
		return
	}
	// Only the egress families: the Go collector's names are not ours.
	var b strings.Builder
	for _, line := range strings.SplitAfter(exposition, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		if name == "#" && len(fields) > 2 {
			name = fields[2]
		}
		if strings.HasPrefix(name, "egress_") {
			b.WriteString(line)
		}
	}
	file := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
