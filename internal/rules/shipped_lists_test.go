package rules

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/config"
	"github.com/hashicorp/hcl/v2"
)

// Tests of what the project ships: the curated lists in config/lists, the
// embedded default config and the examples. They go through the real loader,
// so a list line the parser rejects, or an example whose tests fail, breaks
// the build here rather than on an operator's `egress validate`.

const shippedDir = "../../config"

// shippedNow is the clock of these tests, so that expiring exceptions in the
// examples do not turn into failures on a calendar date.
var shippedNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// shippedLists returns the absolute paths of config/lists/*.txt, by category
// name (the file name without .txt).
func shippedLists(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(shippedDir, "lists", "*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no shipped lists in %s/lists (err %v)", shippedDir, err)
	}
	out := map[string]string{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".txt")] = abs
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// loadShipped writes src to a temporary .hcl file and loads it with the real
// loader; any diagnostic (error or warning) fails the test.
func loadShipped(t *testing.T, src string) *Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "shipped.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(p, Options{Now: func() time.Time { return shippedNow }})
	requireNoDiagnostics(t, diags)
	if cfg == nil {
		t.Fatal("Load returned no config and no error")
	}
	return cfg
}

func requireNoDiagnostics(t *testing.T, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		t.Error(FormatDiagnostic(d))
	}
	if len(diags) > 0 {
		t.FailNow()
	}
}

// categoryBlocks declares one category per shipped list, named after the file.
func categoryBlocks(lists map[string]string) string {
	var b strings.Builder
	for _, name := range sortedKeys(lists) {
		fmt.Fprintf(&b, "category %q {\n  files = [%q]\n}\n", name, lists[name])
	}
	return b.String()
}

func TestShippedListsParseClean(t *testing.T) {
	lists := shippedLists(t)
	for _, want := range []string{"tiktok", "social-media", "recreational", "doh", "ech"} {
		if _, ok := lists[want]; !ok {
			t.Errorf("config/lists/%s.txt is missing", want)
		}
	}
	cfg := loadShipped(t, categoryBlocks(lists)+`
segment "all" {
  sources = ["10.0.0.0/8"]
  default = "allow"
}
`)
	if len(cfg.Categories) != len(lists) {
		t.Fatalf("%d categories compiled, want %d", len(cfg.Categories), len(lists))
	}
	for _, c := range cfg.Categories {
		if c.Domains == 0 {
			t.Errorf("category %q (config/lists/%s.txt) has no domains", c.Name, c.Name)
		}
	}
}

// TestShippedListsNoDuplicates checks each list on its own: no name twice, and
// no name that a parent entry of the same list already covers ("a.x.com" when
// "x.com" is listed matches nothing more and only hides mistakes).
func TestShippedListsNoDuplicates(t *testing.T) {
	for _, name := range sortedKeys(shippedLists(t)) {
		t.Run(name, func(t *testing.T) {
			path := shippedLists(t)[name]
			pats := parseShippedList(t, path)
			seen := map[string]pattern{}
			for _, p := range pats {
				if _, dup := seen[p.base]; dup {
					t.Errorf("%s: %q is listed more than once", filepath.Base(path), p.base)
				}
				seen[p.base] = p
			}
			for _, p := range pats {
				for parent := p.base; ; {
					dot := strings.IndexByte(parent, '.')
					if dot < 0 {
						break
					}
					parent = parent[dot+1:]
					if q, ok := seen[parent]; ok && q.kinds&kindSub != 0 {
						t.Errorf("%s: %q is already covered by %q", filepath.Base(path), p.base, parent)
					}
				}
			}
		})
	}
}

func parseShippedList(t *testing.T, path string) []pattern {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pats, diags := parseList(path, string(data), nil)
	requireNoDiagnostics(t, diags)
	if len(pats) == 0 {
		t.Fatalf("%s: no entries", path)
	}
	return pats
}

// TestShippedTikTokInSocialMedia: social-media.txt promises every tiktok.txt
// entry, so a config that only bans social media bans TikTok too.
func TestShippedTikTokInSocialMedia(t *testing.T) {
	lists := shippedLists(t)
	social := map[string]bool{}
	for _, p := range parseShippedList(t, lists["social-media"]) {
		social[p.base] = true
	}
	for _, p := range parseShippedList(t, lists["tiktok"]) {
		if !social[p.base] {
			t.Errorf("tiktok.txt entry %q is not in social-media.txt", p.base)
		}
	}
}

// shippedCategoryOrder is the order of the deny rules in the first-match test:
// the most specific category first, as config/examples/government.hcl does.
var shippedCategoryOrder = []string{"tiktok", "social-media", "recreational", "doh", "ech"}

// categoryConfig builds one segment "first-match" (source 10.0.0.1) whose
// rules deny each category in order (each rule named after its category), and
// one segment per category "only-<name>" (sources 10.1.0.N) with a single
// deny rule, so that exact membership can be read per category.
func categoryConfig(lists map[string]string, order []string) string {
	var b strings.Builder
	b.WriteString(categoryBlocks(lists))
	b.WriteString("segment \"first-match\" {\n  sources = [\"10.0.0.1\"]\n  default = \"allow\"\n")
	for _, c := range order {
		fmt.Fprintf(&b, "  rule %q {\n    action     = \"deny\"\n    categories = [%q]\n  }\n", c, c)
	}
	b.WriteString("}\n")
	for i, c := range sortedKeys(lists) {
		fmt.Fprintf(&b, "segment %q {\n  sources = [\"10.1.0.%d\"]\n  default = \"allow\"\n", "only-"+c, i+1)
		fmt.Fprintf(&b, "  rule %q {\n    action     = \"deny\"\n    categories = [%q]\n  }\n}\n", c, c)
	}
	return b.String()
}

func TestShippedListsMatchIntendedCategories(t *testing.T) {
	lists := shippedLists(t)
	all := loadShipped(t, categoryConfig(lists, shippedCategoryOrder))
	var withoutTikTok []string
	for _, c := range shippedCategoryOrder {
		if c != "tiktok" {
			withoutTikTok = append(withoutTikTok, c)
		}
	}
	noTikTok := loadShipped(t, categoryConfig(lists, withoutTikTok))
	firstMatch := netip.MustParseAddr("10.0.0.1")

	cases := []struct {
		host string
		in   []string // every category that must hold the host; nil: none
	}{
		{"www.tiktok.com", []string{"tiktok", "social-media"}},
		{"tiktok.com", []string{"tiktok", "social-media"}},
		{"v16-webapp.tiktok.com", []string{"tiktok", "social-media"}},
		{"tiktokcdn.com", []string{"tiktok", "social-media"}},
		{"p16-sign-va.tiktokcdn.com", []string{"tiktok", "social-media"}},
		{"byteoversea.com", []string{"tiktok", "social-media"}},
		{"WWW.TikTok.COM.", []string{"tiktok", "social-media"}},
		{"www.facebook.com", []string{"social-media"}},
		{"www.instagram.com", []string{"social-media"}},
		{"www.netflix.com", []string{"recreational"}},
		{"candycrushsaga.com", []string{"recreational"}},
		{"store.steampowered.com", []string{"recreational"}},
		{"dns.google", []string{"doh"}},
		{"mozilla.cloudflare-dns.com", []string{"doh"}},
		{"cloudflare-ech.com", []string{"ech"}},
		{"gouv.fr", nil},
		{"www.gouv.fr", nil},
		{"gov.uk", nil},
		{"github.com", nil},
		{"www.microsoft.com", nil},
		{"login.microsoftonline.com", nil},
		{"www.google.com", nil},
		{"google.com", nil},
		{"www.amazon.com", nil},
		{"www.linkedin.com", nil},
		{"www.youtube.com", nil},
		{"cloudflare.com", nil},
		{"notiktok.com", nil}, // a suffix match is by label, not by string
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			// Membership, category by category.
			want := map[string]bool{}
			for _, c := range tc.in {
				want[c] = true
			}
			for i, c := range sortedKeys(lists) {
				src := netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
				d := all.Policy.DecideName(src, tc.host, 443)
				got := d.Action == Deny && d.Reason == ReasonRule && d.RuleName() == c
				if !got && (d.Action == Deny || d.Reason != ReasonDefault) {
					t.Fatalf("segment only-%s: unexpected decision %s/%s rule %q", c, d.Action, d.Reason, d.RuleName())
				}
				if got != want[c] {
					t.Errorf("in category %q = %t, want %t", c, got, want[c])
				}
			}
			// First match in the ordered segment, with and without the TikTok rule.
			check := func(cfg *Config, order []string, label string) {
				t.Helper()
				wantRule := ""
				for _, c := range order {
					if want[c] {
						wantRule = c
						break
					}
				}
				d := cfg.Policy.DecideName(firstMatch, tc.host, 443)
				if wantRule == "" {
					if d.Action != Allow || d.Reason != ReasonDefault || d.Rule != nil {
						t.Errorf("%s: got %s/%s rule %q, want allow by the segment default", label, d.Action, d.Reason, d.RuleName())
					}
					return
				}
				if d.Action != Deny || d.Reason != ReasonRule || d.RuleName() != wantRule {
					t.Errorf("%s: got %s/%s rule %q, want deny by rule %q", label, d.Action, d.Reason, d.RuleName(), wantRule)
				}
			}
			check(all, shippedCategoryOrder, "all rules")
			check(noTikTok, withoutTikTok, "without the tiktok rule")
		})
	}
}

func TestShippedDefaultConfig(t *testing.T) {
	cfg, diags := Load(config.DefaultPath, Options{FS: config.FS, Now: func() time.Time { return shippedNow }})
	requireNoDiagnostics(t, diags)
	if len(cfg.Tests) == 0 {
		t.Fatal("the default config has no test blocks")
	}
	runShippedTests(t, cfg)

	// SPEC §8: loopback sources only, the shipped social-media category denied.
	loop4, loop6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	for _, tc := range []struct {
		src    netip.Addr
		host   string
		action Action
		reason Reason
	}{
		{loop4, "example.com", Allow, ReasonDefault},
		{loop6, "example.com", Allow, ReasonDefault},
		{loop4, "www.tiktok.com", Deny, ReasonRule},
		{loop6, "www.facebook.com", Deny, ReasonRule},
		{netip.MustParseAddr("10.0.0.1"), "example.com", Deny, ReasonUnknownSource},
		{netip.MustParseAddr("2001:db8::1"), "example.com", Deny, ReasonUnknownSource},
	} {
		d := cfg.Policy.DecideName(tc.src, tc.host, 443)
		if d.Action != tc.action || d.Reason != tc.reason {
			t.Errorf("%s -> %s: got %s/%s, want %s/%s", tc.src, tc.host, d.Action, d.Reason, tc.action, tc.reason)
		}
	}
	if cfg.Proxy.Listen != DefaultProxyListen || cfg.Admin.Listen != DefaultAdminListen {
		t.Errorf("default listeners %s, %s; want %s, %s", cfg.Proxy.Listen, cfg.Admin.Listen, DefaultProxyListen, DefaultAdminListen)
	}
}

func TestShippedExamples(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(shippedDir, "examples", "*.hcl"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples in %s/examples (err %v)", shippedDir, err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, diags := Load(p, Options{Now: func() time.Time { return shippedNow }})
			requireNoDiagnostics(t, diags)
			if len(cfg.Tests) == 0 {
				t.Errorf("%s has no test blocks", p)
			}
			runShippedTests(t, cfg)
		})
	}
}

func runShippedTests(t *testing.T, cfg *Config) {
	t.Helper()
	for _, r := range cfg.RunTests() {
		if !r.Pass {
			t.Errorf("FAIL %s: %s [%s]", r.Test.Name, r.Why, r.Test.Pos)
		}
	}
}
