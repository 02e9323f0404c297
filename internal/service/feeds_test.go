package service

import (
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/feeds"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFeedLoops: a loop signals a reload only for a changed copy; a failure
// is counted and never signals; sync stops the loop of a removed feed.
func TestFeedLoops(t *testing.T) {
	var mu sync.Mutex
	body, status := "a.example\nb.example\n", 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	src := fmt.Sprintf(`
upstream {
  hosts         = { "example.com" = "127.0.0.1" }
  allow_private = ["127.0.0.1/32"]
}
category "c" { feeds = [{ url = "https://example.com:%s/l.txt", refresh = "1s", ca_file = "ca.pem", cache_dir = "cache" }] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}`, port)
	path := filepath.Join(dir, "c.hcl")
	os.WriteFile(path, []byte(src), 0o600)
	cfg, diags := rules.Load(path, rules.Options{})
	if diags.HasErrors() {
		t.Fatal(rules.DiagnosticsError(diags))
	}
	m := metrics.New(prometheus.NewRegistry())
	l := newFeedLoops(active.NewStore(cfg), m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l.sync(cfg)
	defer l.stop()
	select {
	case <-l.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload signal after the first fetch")
	}
	if n, err := rules.CountList("", mustRead(t, cfg.Feeds[0].CacheFile)); err != nil || n != 2 {
		t.Fatalf("cache: %d %v", n, err)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.FeedUpdates.WithLabelValues("c/1", feeds.Failure)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("failure not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-l.changed:
		t.Fatal("a failed update asked for a reload")
	default:
	}
	// The same copy again: success, no reload.
	mu.Lock()
	status = 0
	mu.Unlock()
	s0 := testutil.ToFloat64(m.FeedUpdates.WithLabelValues("c/1", feeds.Success))
	for testutil.ToFloat64(m.FeedUpdates.WithLabelValues("c/1", feeds.Success)) <= s0 {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("no success after the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-l.changed:
		t.Fatal("an unchanged copy asked for a reload")
	default:
	}
	// A config without the feed stops its loop.
	os.WriteFile(path, []byte("segment \"s\" {\n sources = [\"10.0.0.0/8\"]\n default = \"allow\"\n}\n"), 0o600)
	cfg2, _ := rules.Load(path, rules.Options{})
	l.sync(cfg2)
	l.mu.Lock()
	n := len(l.loops)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d loops after the feed was removed", n)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFirstWait(t *testing.T) {
	dir := t.TempDir()
	s := &feeds.Spec{URL: "https://a.example/l", Refresh: time.Hour, CacheFile: filepath.Join(dir, "l")}
	now := time.Now()
	if d := firstWait(s, now); d != 0 {
		t.Fatalf("no cache: wait %v", d)
	}
	os.WriteFile(s.CacheFile, []byte("a.example\n"), 0o600)
	old := now.Add(-20 * time.Minute)
	os.Chtimes(s.CacheFile, old, old)
	if d := firstWait(s, now); d < 39*time.Minute || d > 41*time.Minute {
		t.Fatalf("cache 20m old, refresh 1h: wait %v", d)
	}
	old = now.Add(-2 * time.Hour)
	os.Chtimes(s.CacheFile, old, old)
	if d := firstWait(s, now); d != 0 {
		t.Fatalf("stale cache: wait %v", d)
	}
}
