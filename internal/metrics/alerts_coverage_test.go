package metrics

import (
	"os"
	"regexp"
	"testing"
)

// TestEveryAlertHasAPromtoolTest: each alert of deploy/prometheus/alerts.yaml
// has a promtool unit test in testdata/alerts_test.yaml in which it fires
// (an alertname followed by exp_alerts), so no alert ships untested.
func TestEveryAlertHasAPromtoolTest(t *testing.T) {
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllSubmatch(rules, -1)
	if len(alerts) < 10 {
		t.Fatalf("only %d alerts found in %s", len(alerts), alertsFile)
	}
	for _, a := range alerts {
		name := regexp.QuoteMeta(string(a[1]))
		fires := regexp.MustCompile(`(?m)^\s*alertname: ` + name + `\s*\n\s*exp_alerts:\s*\n\s*- exp_labels:`)
		if !fires.Match(tests) {
			t.Errorf("alert %s has no promtool test in which it fires (%s)", a[1], alertTestsFile)
		}
	}
}
