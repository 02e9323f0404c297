package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `egress report` renders one self-contained HTML page; headless Chromium
// opens it from a file:// URL, and the test asserts on the DOM Chromium ends
// with (--dump-dom), saves a screenshot and a PDF print of it as artifacts
// (under $EGRESS_E2E_ARTIFACTS/report when set, else the test's temp dir).
//
// Network: none. The page must not load anything; to make sure, Chromium
// resolves no name (--host-resolver-rules) and its only proxy is a closed
// loopback port.

const reportConfig = `
category "social" { domains = ["tiktok.com", "tiktokcdn.com", "facebook.com"] }
category "ai"     { domains = ["chat.example"] }
policy "baseline" {
  rule "ai-rollout" {
    action     = "deny"
    monitor    = true
    categories = ["ai"]
    owner      = "ssi@ministry.example"
    ticket     = "SEC-2026-031"
  }
  rule "no-social" {
    action     = "deny"
    categories = ["social"]
  }
}
segment "ministry" {
  sources  = ["10.20.0.0/16"]
  default  = "allow"
  policies = ["baseline"]
}
segment "press" {
  sources = ["10.20.5.0/24"]
  default = "allow"
  rule "press-social" {
    action     = "allow"
    categories = ["social"]
    owner      = "press@ministry.example"
    ticket     = "SEC-2023-114"
    expires    = "2099-12-31"
  }
  policies = ["baseline"]
}
test "ministry: tiktok denied" {
  source = "10.20.9.9"
  host   = "www.tiktok.com"
  expect = "deny"
  rule   = "no-social"
}
test "press: tiktok allowed" {
  source = "10.20.5.9"
  host   = "www.tiktok.com"
  expect = "allow"
  rule   = "press-social"
}
`

// reportEvents writes 14 days of ECS lines as `egress run` writes them:
// denials by no-social, the press exception, monitor hits.
func reportEvents(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	day0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for d := range 14 {
		for i := range 3 + d%5 {
			ts := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute).Format(time.RFC3339Nano)
			fmt.Fprintf(w, `{"@timestamp":"%s","event":{"module":"egress","action":"deny","reason":"rule"},"rule":{"name":"no-social","ruleset":"baseline"},"egress":{"segment":"ministry","listener":"proxy"},"source":{"ip":"10.20.9.%d"},"destination":{"domain":"www.tiktok.com","port":443}}`+"\n", ts, i)
			if d%2 == 0 {
				fmt.Fprintf(w, `{"@timestamp":"%s","event":{"module":"egress","action":"allow","reason":"rule"},"rule":{"name":"press-social","ruleset":"press"},"egress":{"segment":"press","listener":"proxy","exception":{"owner":"press@ministry.example","ticket":"SEC-2023-114","expires":"2099-12-31"}},"source":{"ip":"10.20.5.%d"},"destination":{"domain":"www.tiktok.com","port":443}}`+"\n", ts, i)
			}
			fmt.Fprintf(w, `{"@timestamp":"%s","event":{"module":"egress","action":"allow","reason":"default"},"egress":{"segment":"ministry","listener":"proxy","monitor":[{"rule":"ai-rollout","ruleset":"baseline","action":"deny"}]},"source":{"ip":"10.20.8.%d"},"destination":{"domain":"chat.example","port":443}}`+"\n", ts, i)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func reportArtifacts(t *testing.T) string {
	dir := os.Getenv("EGRESS_E2E_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "report")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromiumFile runs headless Chromium on a local file with extra arguments
// (--dump-dom, --screenshot=..., --print-to-pdf=...) and returns its stdout.
func chromiumFile(t *testing.T, bin, page string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
		"--disable-features=MediaRouter,OptimizationHints,Translate,AutofillServerCommunication,InterestFeedContentSuggestions",
		"--host-resolver-rules=MAP * ~NOTFOUND",
		"--proxy-server=http://127.0.0.1:9", // nothing listens: any fetch fails
		"--user-data-dir=" + t.TempDir(),
		"--window-size=1280,2200",
		"--virtual-time-budget=2000",
	}, extra...)
	args = append(args, "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chromium did not finish %s within 90s\nstderr:\n%s", page, stderr.String())
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", extra, err, stderr.String())
	}
	return stdout.String()
}

var (
	tagRE   = regexp.MustCompile(`<[^>]*>`)
	styleRE = regexp.MustCompile(`(?s)<style>.*?</style>`)
)

func TestReportInChromium(t *testing.T) {
	bin := chromiumBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(cfg, []byte(reportConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config is committed in a git tree: the report names the commit and
	// when each rule was committed.
	for _, args := range [][]string{{"init", "-q"}, {"add", "policy.hcl"},
		{"-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "policy"}} {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	head, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	events := filepath.Join(dir, "events.jsonl")
	reportEvents(t, events)
	art := reportArtifacts(t)
	page := filepath.Join(art, "report.html")
	out, err := exec.Command(binary, "report", "-config", cfg, "-events", events, "-o", page).CombinedOutput()
	if err != nil {
		t.Fatalf("egress report: %v\n%s", err, out)
	}
	html, _ := os.ReadFile(page)
	if len(html) > 48<<10 {
		t.Errorf("report.html is %d bytes; keep it small", len(html))
	}

	dom := chromiumFile(t, bin, page, "--dump-dom")
	if !strings.Contains(dom, "<svg") || !strings.Contains(dom, "</html>") {
		t.Fatalf("DOM is not the rendered report:\n%s", dom)
	}
	text := strings.Join(strings.Fields(tagRE.ReplaceAllString(styleRE.ReplaceAllString(dom, ""), " ")), " ")
	for _, want := range []string{
		"egress policy attestation",
		"Commit " + strings.TrimSpace(string(head)) + " Since",
		"Segment “press”",
		"no-social (policy baseline) deny categories social (3) " + today + " policy.hcl:12:3", // what is denied, by which rule and list
		"social 3 inline domains", // list size and source
		"press-social (segment press) allow categories social press press@ministry.example SEC-2023-114 since " + today + " expires 2099-12-31", // exception row
		"days left",
		"ai-rollout (policy baseline) deny",
		"ministry: tiktok denied PASS",
		"2 passed, 0 failed",
		"no-social (baseline) deny 68 7 2026-11-01: 3 2026-11-02: 4", // hits, unique sources, the chart's bars
		"press-social (press) deny",                                  // (never: it allows)
	} {
		if want == "press-social (press) deny" {
			if strings.Contains(text, want) {
				t.Errorf("DOM text has %q", want)
			}
			continue
		}
		if !strings.Contains(text, want) {
			t.Errorf("DOM text lacks %q", want)
		}
	}
	// 14 days of no-social: one bar per day in its chart; monitor rule
	// would have blocked every allowed event it matched.
	if !regexp.MustCompile(`ai-rollout \(baseline\) deny 68 68 7 2026-11-01: 3`).MatchString(text) {
		t.Errorf("monitor row missing or wrong in: %s", text)
	}
	// One chart per row: 3 rules (no-social, press-social, default), 2
	// exceptions, 1 monitor rule.
	if n := strings.Count(dom, "<svg"); n != 6 {
		t.Errorf("%d charts in the DOM, want 6", n)
	}

	shot := filepath.Join(art, "report.png")
	chromiumFile(t, bin, page, "--screenshot="+shot)
	if b, err := os.ReadFile(shot); err != nil || len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("screenshot %s: %v, %d bytes", shot, err, len(b))
	}
	pdf := filepath.Join(art, "report.pdf")
	chromiumFile(t, bin, page, "--no-pdf-header-footer", "--print-to-pdf="+pdf)
	if b, err := os.ReadFile(pdf); err != nil || !bytes.HasPrefix(b, []byte("%PDF")) {
		t.Errorf("printed PDF %s: %v", pdf, err)
	}
	t.Logf("artifacts: %s (report.html, report.png, report.pdf)", art)
}
