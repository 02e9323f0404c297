package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func newTest(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := NewRegistry()
	return New(reg), reg
}

func TestLint(t *testing.T) {
	m, reg := newTest(t)
	m.InitDecisions(audit.Listeners, []string{"ministry"}, []RuleLabel{{"ministry", "no-social-media", ActionDeny}})
	m.ConfigLoaded(true, "abc123", time.Unix(1700000000, 0))
	m.SetBuildInfo("v0.0.0-test", "deadbeef")
	m.SetLimits(20000, 512)
	m.ClientHello.Observe(0.002)
	m.UpstreamDial.Observe(0.01)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Each collector alone, too (CollectAndLint), for the egress metrics.
	for _, c := range []prometheus.Collector{m.Decisions, m.Bytes, m.ClientHello, m.ConfigInfo, m.BuildInfo} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// gather returns the egress metric families by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func TestNamesAndFixedSeries(t *testing.T) {
	_, reg := newTest(t)
	fams := gather(t, reg)
	// Every metric the SPEC names, and the fixed-label series at 0.
	want := map[string]int{
		"egress_active_connections":                           len(audit.Listeners),
		"egress_bytes_total":                                  2,
		"egress_config_reloads_total":                         2,
		"egress_connections_rejected_total":                   4*len(audit.Listeners) + 2, // and the admin listener's two caps
		"egress_client_hello_errors_total":                    15,
		"egress_quic_packets_dropped_total":                   10,
		"egress_upstream_errors_total":                        3,
		"egress_log_events_dropped_total":                     1,
		"egress_log_events_total":                             1,
		"egress_client_hello_seconds":                         1,
		"egress_upstream_dial_seconds":                        1,
		"egress_tunnels_closed_on_reload_total":               1,
		"egress_shutdown_connections_closed_total":            1,
		"egress_memory_trims_total":                           1,
		"egress_config_last_reload_success_timestamp_seconds": 1,
		"egress_limits_max_connections":                       1,
		"egress_dns_lookups_total":                            9,
		"egress_dns_cache_entries":                            1,
	}
	for name, n := range want {
		mf, ok := fams[name]
		if !ok {
			t.Errorf("%s missing at start-up", name)
			continue
		}
		if got := len(mf.GetMetric()); got != n {
			t.Errorf("%s: %d series at start-up, want %d", name, got, n)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
	}
	// Decisions has no series until InitDecisions names the segments.
	if _, ok := fams["egress_decisions_total"]; ok {
		t.Errorf("egress_decisions_total has series before InitDecisions")
	}
	// The Go and process collectors are registered by NewRegistry.
	if _, ok := fams["go_goroutines"]; !ok {
		t.Errorf("go_goroutines missing: NewRegistry must register the Go collector")
	}
}

func TestInitDecisions(t *testing.T) {
	m, _ := newTest(t)
	segments := []string{"ministry", "communications"}
	rules := []RuleLabel{
		{"communications", "institutional-accounts", ActionAllow},
		{"communications", "no-social-media", ActionDeny},
		{"ministry", "no-social-media", ActionDeny},
	}
	m.InitDecisions(audit.Listeners, segments, rules)

	// every listener × (2 segments × 2 default series + 3 rule series)
	if n, want := testutil.CollectAndCount(m.Decisions), len(audit.Listeners)*(2*2+3); n != want {
		t.Fatalf("series = %d, want %d", n, want)
	}
	for _, l := range audit.Listeners {
		for _, s := range segments {
			for _, a := range []string{ActionAllow, ActionDeny} {
				c, err := m.Decisions.GetMetricWithLabelValues(l, s, a, ReasonDefault, "")
				if err != nil {
					t.Fatal(err)
				}
				if v := testutil.ToFloat64(c); v != 0 {
					t.Errorf("%s/%s/%s default = %v, want 0", l, s, a, v)
				}
			}
		}
	}
	want := `
# HELP egress_decisions_total Policy decisions, one per plain-HTTP request, per tunnel and per refused connection. rule is empty when the segment default or a protocol check decided.
# TYPE egress_decisions_total counter
egress_decisions_total{action="allow",listener="proxy",reason="default",rule="",segment="communications"} 0
egress_decisions_total{action="allow",listener="proxy",reason="default",rule="",segment="ministry"} 0
egress_decisions_total{action="allow",listener="proxy",reason="rule",rule="institutional-accounts",segment="communications"} 0
egress_decisions_total{action="deny",listener="proxy",reason="default",rule="",segment="communications"} 0
egress_decisions_total{action="deny",listener="proxy",reason="default",rule="",segment="ministry"} 1
egress_decisions_total{action="deny",listener="proxy",reason="invalid_host",rule="",segment="ministry"} 2
egress_decisions_total{action="deny",listener="proxy",reason="rule",rule="no-social-media",segment="communications"} 0
egress_decisions_total{action="deny",listener="proxy",reason="rule",rule="no-social-media",segment="ministry"} 0
`
	m.InitDecisions([]string{audit.ListenerProxy}, segments, rules) // idempotent; other listeners' series stay
	m.Decision(audit.ListenerProxy, "ministry", ActionDeny, ReasonDefault, "")
	m.Decision(audit.ListenerProxy, "ministry", ActionDeny, "invalid_host", "")
	m.Decision(audit.ListenerProxy, "ministry", ActionDeny, "invalid_host", "")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Decisions)
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var filtered []*dto.Metric
	for _, mm := range got[0].GetMetric() {
		for _, lp := range mm.GetLabel() {
			if lp.GetName() == "listener" && lp.GetValue() == audit.ListenerProxy {
				filtered = append(filtered, mm)
			}
		}
	}
	got[0].Metric = filtered
	if err := compareFamilies(got, want); err != nil {
		t.Error(err)
	}
}

// compareFamilies compares gathered families with text exposition.
func compareFamilies(got []*dto.MetricFamily, want string) error {
	g := prometheus.Gatherers{prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return got, nil })}
	return testutil.GatherAndCompare(g, strings.NewReader(want))
}

func TestInitDecisionsDropsRemoved(t *testing.T) {
	m, _ := newTest(t)
	m.InitDecisions(audit.Listeners, []string{"a", "b"}, []RuleLabel{{"a", "r1", ActionDeny}, {"a", "r2", ActionAllow}})
	m.Decision(audit.ListenerProxy, "a", ActionDeny, ReasonRule, "r1") // cached
	m.Decision(audit.ListenerProxy, "b", ActionAllow, ReasonDefault, "")

	// Reload: segment b and rule r1 are gone.
	m.InitDecisions(audit.Listeners, []string{"a"}, []RuleLabel{{"a", "r2", ActionAllow}})
	if n, want := testutil.CollectAndCount(m.Decisions), len(audit.Listeners)*(2+1); n != want {
		t.Fatalf("series after reload = %d, want %d", n, want)
	}
	// A late decision under the old config recreates its series and is
	// counted (the stale cached counter must not swallow it).
	m.Decision(audit.ListenerProxy, "a", ActionDeny, ReasonRule, "r1")
	c, err := m.Decisions.GetMetricWithLabelValues(audit.ListenerProxy, "a", ActionDeny, ReasonRule, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(c); v != 1 {
		t.Errorf("late decision counted %v, want 1", v)
	}
}

func TestDecisionConcurrent(t *testing.T) {
	m, _ := newTest(t)
	const workers, each = 4, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.Decision(audit.ListenerProxy, "s", ActionAllow, ReasonRule, fmt.Sprintf("r%d", (i+w)%3))
			}
		}()
	}
	// Reloads racing with decisions (same rule set: nothing is deleted).
	for range 5 {
		m.InitDecisions(audit.Listeners, []string{"s"}, []RuleLabel{{"s", "r0", ActionAllow}, {"s", "r1", ActionAllow}, {"s", "r2", ActionAllow}})
	}
	wg.Wait()
	var total float64
	for i := range 3 {
		total += testutil.ToFloat64(m.Decisions.WithLabelValues(audit.ListenerProxy, "s", ActionAllow, ReasonRule, fmt.Sprintf("r%d", i)))
	}
	if total != workers*each {
		t.Errorf("counted %v decisions, want %d", total, workers*each)
	}
}

func TestConfigLoaded(t *testing.T) {
	m, _ := newTest(t)
	at := time.Unix(1700000000, 500_000_000)
	m.ConfigLoaded(true, "v1", at)
	m.ConfigLoaded(true, "v2", at.Add(time.Minute))
	m.ConfigLoaded(false, "broken", at.Add(2*time.Minute))

	if n := testutil.CollectAndCount(m.ConfigInfo); n != 1 {
		t.Fatalf("config_info series = %d, want 1", n)
	}
	if v := testutil.ToFloat64(m.ConfigInfo.WithLabelValues("v2")); v != 1 {
		t.Errorf("config_info{version=v2} = %v", v)
	}
	if v := testutil.ToFloat64(m.ConfigLastSuccess); v != 1700000060.5 {
		t.Errorf("last success = %v", v)
	}
	if v := testutil.ToFloat64(m.ConfigLastSuccessful); v != 0 {
		t.Errorf("last reload successful = %v, want 0", v)
	}
	if s, f := testutil.ToFloat64(m.ConfigReloads.WithLabelValues(ResultSuccess)), testutil.ToFloat64(m.ConfigReloads.WithLabelValues(ResultFailure)); s != 2 || f != 1 {
		t.Errorf("reloads success=%v failure=%v", s, f)
	}
}

func TestNewTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg)
}

func BenchmarkDecision(b *testing.B) {
	m := New(prometheus.NewRegistry())
	m.InitDecisions(audit.Listeners, []string{"ministry"}, []RuleLabel{{"ministry", "no-social-media", ActionDeny}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Decision(audit.ListenerProxy, "ministry", ActionDeny, ReasonRule, "no-social-media")
		}
	})
}

func BenchmarkWithLabelValues(b *testing.B) {
	m := New(prometheus.NewRegistry())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Decisions.WithLabelValues(audit.ListenerProxy, "ministry", ActionDeny, ReasonRule, "no-social-media").Inc()
		}
	})
}

func TestFeeds(t *testing.T) {
	m, reg := newTest(t)
	at := time.Unix(1700000000, 0)
	m.SetFeeds([]FeedState{{Name: "intel/1", Entries: 3, LastSuccess: at}, {Name: "gone", Entries: 1}})
	m.FeedUpdated("intel/1", "failure", at.Add(time.Hour))
	m.FeedUpdated("intel/1", "not_modified", at.Add(2*time.Hour))
	m.SetFeeds([]FeedState{{Name: "intel/1", Entries: 4}})
	fams := gather(t, reg)
	if n := len(fams["egress_feed_updates_total"].GetMetric()); n != 3 {
		t.Fatalf("updates series %d, want 3 (one feed, three results)", n)
	}
	for _, mt := range fams["egress_feed_updates_total"].GetMetric() {
		want := 0.0
		if r := mt.GetLabel()[1].GetValue(); r == "failure" || r == "not_modified" {
			want = 1
		}
		if mt.GetCounter().GetValue() != want {
			t.Errorf("%v = %v", mt.GetLabel(), mt.GetCounter().GetValue())
		}
	}
	if v := fams["egress_feed_entries"].GetMetric(); len(v) != 1 || v[0].GetGauge().GetValue() != 4 {
		t.Errorf("entries %v", v)
	}
	if v := fams["egress_feed_last_success_timestamp_seconds"].GetMetric(); len(v) != 1 || v[0].GetGauge().GetValue() != float64(at.Add(2*time.Hour).Unix()) {
		t.Errorf("last success %v", v)
	}
}
