package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadSIGHUPCountsOnce: a SIGHUP whose reload fails is one failure in
// egress_config_reloads_total, not two (the file poll must not retry the same
// broken files); after a fix, one success.
func TestBadSIGHUPCountsOnce(t *testing.T) {
	const interval = 300 * time.Millisecond
	cfg := strings.Replace(opsCfg("blocked.invalid", ""), `reload_interval = "200ms"`, `reload_interval = "300ms"`, 1)
	p := Start(t, cfg, nil)
	const failure, success = `egress_config_reloads_total{result="failure"}`, `egress_config_reloads_total{result="success"}`
	f0, s0 := metricValue(t, p, failure), metricValue(t, p, success)
	if f0 < 0 || s0 < 0 {
		t.Fatalf("no reload series: failure %v success %v", f0, s0)
	}
	good, err := os.ReadFile(p.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// Written in place and signalled at once: the poll (every 300ms) could in
	// principle see the file first, within the microseconds in between.
	broken := strings.Replace(string(good), `default = "allow"`, `default = "perhaps"`, 1)
	if err := os.WriteFile(p.ConfigPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, p, failure) < f0+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the failed SIGHUP reload not counted\n%s", p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * interval) // several polls: none may retry the broken file
	if f := metricValue(t, p, failure); f != f0+1 {
		t.Fatalf("failures grew by %v after one bad SIGHUP, want 1\n%s", f-f0, p.Stderr())
	}
	if n := strings.Count(p.Stderr(), "reload failed"); n != 1 {
		t.Fatalf("%d \"reload failed\" log lines, want 1\n%s", n, p.Stderr())
	}

	fixed := strings.Replace(string(good), `"blocked.invalid"`, `"other.test"`, 1)
	if err := os.WriteFile(p.ConfigPath, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for metricValue(t, p, success) < s0+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the fixed file not reloaded by the poll\n%s", p.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * interval)
	if s, f := metricValue(t, p, success), metricValue(t, p, failure); s != s0+1 || f != f0+1 {
		t.Fatalf("after the fix: successes +%v, failures +%v; want +1, +1", s-s0, f-f0)
	}
}
