package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

// The shipped dashboard and alert rules use these metrics: they must parse
// and name only metrics that New registers.
const (
	dashboardFile  = "../../deploy/grafana/egress.json"
	alertsFile     = "../../deploy/prometheus/alerts.yaml"
	alertTestsFile = "testdata/alerts_test.yaml"
)

var metricRef = regexp.MustCompile(`\begress_[a-z_]+`)

// registeredNames returns the egress metric names New registers, with the
// histogram series suffixes.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	m, reg := newTest(t)
	m.ConfigLoaded(true, "v", time.Now())
	m.SetBuildInfo("v", "c")
	m.InitDecisions(audit.Listeners, []string{"s"}, nil)
	m.SetFeeds([]FeedState{{Name: "f", Entries: 1, LastSuccess: time.Now()}}) // per-feed series exist once a feed is configured
	names := map[string]bool{}
	for name := range gather(t, reg) {
		names[name] = true
		names[name+"_bucket"] = true
		names[name+"_sum"] = true
		names[name+"_count"] = true
	}
	return names
}

func checkRefs(t *testing.T, what, text string, names map[string]bool) {
	t.Helper()
	refs := metricRef.FindAllString(text, -1)
	if len(refs) == 0 {
		t.Errorf("%s references no egress metric", what)
	}
	for _, r := range refs {
		if !names[r] {
			t.Errorf("%s references %s, which package metrics does not register", what, r)
		}
	}
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Type    string                   `json:"type"`
		Title   string                   `json:"title"`
		Targets []target                 `json:"targets"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Schema     int     `json:"schemaVersion"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.Schema == 0 {
		t.Errorf("dashboard lacks uid/title/schemaVersion")
	}
	names := registeredNames(t)
	titles := map[string]bool{}
	var exprs []string
	for _, p := range d.Panels {
		titles[p.Title] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	checkRefs(t, "dashboard", strings.Join(exprs, "\n"), names)
	// What the dashboard must show.
	for _, want := range []string{"Decisions by action", "Denies by reason", "Top deny rules (selected range)", "Active connections",
		"Bytes relayed", "ClientHello wait", "Upstream dial", "Config reloads", "SIEM events"} {
		if !titles[want] {
			t.Errorf("dashboard lacks panel %q", want)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"histogram_quantile(0.5, sum by (le) (rate(egress_client_hello_seconds_bucket",
		"histogram_quantile(0.99, sum by (le) (rate(egress_upstream_dial_seconds_bucket", "egress_log_events_dropped_total"} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard lacks query %q", want)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			checkRefs(t, "dashboard variable "+v.Name, q["query"].(string), names)
		}
	}
}

// TestAlertRules checks the rule file's structure without a YAML library:
// two-space indentation, no tabs, a groups: list, and every alert with an
// expression, a for/labels/severity and a summary and description.
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	if strings.Contains(text, "\t") {
		t.Fatal("alerts.yaml contains a tab")
	}
	type alert struct {
		name                                         string
		expr, severity, summary, description, labels bool
	}
	var alerts []*alert
	var cur *alert
	sawGroups := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent%2 != 0 {
			t.Errorf("line %d: odd indentation", n)
		}
		if indent == 0 {
			if trimmed != "groups:" || sawGroups {
				t.Errorf("line %d: top level must be a single groups: key, got %q", n, trimmed)
			}
			sawGroups = true
			continue
		}
		switch key, _, _ := strings.Cut(strings.TrimPrefix(trimmed, "- "), ":"); key {
		case "alert":
			cur = &alert{name: strings.TrimSpace(strings.TrimPrefix(trimmed, "- alert:"))}
			alerts = append(alerts, cur)
		case "expr":
			if cur != nil {
				cur.expr = true
			}
		case "labels":
			if cur != nil {
				cur.labels = true
			}
		case "severity":
			if cur != nil {
				v := strings.TrimSpace(strings.TrimPrefix(trimmed, "severity:"))
				cur.severity = v == "critical" || v == "warning" || v == "info"
			}
		case "summary":
			if cur != nil {
				cur.summary = true
			}
		case "description":
			if cur != nil {
				cur.description = true
			}
		}
	}
	if !sawGroups {
		t.Fatal("no groups: key")
	}
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.name] {
			t.Errorf("alert %s defined twice", a.name)
		}
		seen[a.name] = true
		if !a.expr || !a.labels || !a.severity || !a.summary || !a.description {
			t.Errorf("alert %s: expr=%v labels=%v severity=%v summary=%v description=%v", a.name, a.expr, a.labels, a.severity, a.summary, a.description)
		}
	}
	for _, want := range []string{"EgressDown", "EgressConfigReloadFailed", "EgressConfigStale", "EgressLogEventsDropped",
		"EgressDenySpike", "EgressConnectionsNearLimit"} {
		if !seen[want] {
			t.Errorf("missing alert %s", want)
		}
	}
	checkRefs(t, "alerts.yaml", text, registeredNames(t))
}

// TestAlertRulesPromtool validates and unit-tests the rules with promtool
// when it is installed (Debian package "prometheus").
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed; structure checked by TestAlertRules")
	}
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertTestsFile}} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
