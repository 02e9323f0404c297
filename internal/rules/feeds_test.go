package rules

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-proxy/egress/internal/feeds"
)

const feedHCL = `
category "intel" {
  domains = ["static.example"]
  feeds   = [{ url = "https://lists.example/intel.txt?k=1", refresh = "1h", cache_dir = "cache", max_shrink = 0.25 },
             { url = "https://lists.example/more.txt", refresh = "1s", name = "more", cache_dir = "cache",
               sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" }]
}
segment "all" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "no-intel" {
    action     = "deny"
    categories = ["intel"]
  }
}
`

func writeConfig(t *testing.T, src string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func decideHost(cfg *Config, host string) Action {
	return cfg.Policy.DecideName(netip.MustParseAddr("10.1.1.1"), host, 443).Action
}

// TestFeedReadsCachedCopy: without a cached copy a feed is a warning and
// adds nothing; with one, its names are the category's, counted, hashed into
// the version and watched.
func TestFeedReadsCachedCopy(t *testing.T) {
	dir, path := writeConfig(t, feedHCL)
	cfg, diags := Load(path, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	if len(cfg.Feeds) != 2 || len(cfg.Warnings) != 2 || !strings.Contains(cfg.Warnings[0].Summary, "cached copy") {
		t.Fatalf("feeds %d warnings %v", len(cfg.Feeds), cfg.Warnings)
	}
	f := cfg.Feeds[0]
	if f.Name != "intel/1" || f.Refresh.String() != "1h0m0s" || f.MaxShrink != 0.25 || f.Cached ||
		f.CacheFile != feeds.CacheFile(filepath.Join(dir, "cache"), f.URL) || strings.Contains(f.CacheFile, "k=1") {
		t.Fatalf("feed %+v", f)
	}
	if g := cfg.Feeds[1]; g.Name != "more" || g.PublicKey == nil || len(g.SHA256) != 32 || g.Refresh.Seconds() != 1 {
		t.Fatalf("feed 2 %+v", g)
	}
	if decideHost(cfg, "bad.example") != Allow || decideHost(cfg, "static.example") != Deny {
		t.Fatal("decisions without a cache")
	}
	v0 := cfg.Version
	os.MkdirAll(filepath.Dir(f.CacheFile), 0o755)
	if err := os.WriteFile(f.CacheFile, []byte("bad.example\n0.0.0.0 worse.example bad.example\n||ads.example^\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags = Load(path, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	f = cfg.Feeds[0]
	if !f.Cached || f.Entries != 3 || cfg.Version == v0 {
		t.Fatalf("cached feed %+v version %s (was %s)", f, cfg.Version, v0)
	}
	for _, h := range []string{"bad.example", "x.worse.example", "ads.example", "static.example"} {
		if decideHost(cfg, h) != Deny {
			t.Errorf("%s not denied by the feed", h)
		}
	}
	watched := false
	for _, p := range cfg.Files {
		watched = watched || p == f.CacheFile
	}
	if !watched {
		t.Errorf("cache file not in Files %v", cfg.Files)
	}
	if cfg.Categories[0].Domains != 5 { // patterns read, duplicates included (as for list files)
		t.Errorf("category domains %d", cfg.Categories[0].Domains)
	}
}

func TestFeedErrors(t *testing.T) {
	cases := []struct{ feed, want string }{
		{`{ refresh = "1h" }`, "url is required"},
		{`{ url = "http://a.example/x", refresh = "1h" }`, "must be https"},
		{`{ url = "https://a.example/x" }`, "refresh is required"},
		{`{ url = "https://a.example/x", refresh = "500ms" }`, "at least 1s"},
		{`{ url = "https://a.example/x", refresh = "1h", max_shrink = 2 }`, "max_shrink"},
		{`{ url = "https://a.example/x", refresh = "1h", max_bytes = 0 }`, "max_bytes"},
		{`{ url = "https://a.example/x", refresh = "1h", sha256 = "abc" }`, "64 hex digits"},
		{`{ url = "https://a.example/x", refresh = "1h", public_key = "abc" }`, "Ed25519"},
		{`{ url = "https://a.example/x", refresh = "1h", signature_url = "https://a.example/s" }`, "needs public_key"},
		{`{ url = "https://a.example/x", refresh = "1h", refrsh = "1h" }`, "did you mean \"refresh\""},
		{`{ url = "https://a.example/x", refresh = "1h", max_bytes = "big" }`, "must be a number"},
		{`"https://a.example/x"`, "is an object"},
	}
	for _, c := range cases {
		_, path := writeConfig(t, "category \"x\" {\n  feeds = [\n    "+c.feed+"\n  ]\n}\n")
		_, diags := Load(path, Options{})
		err := DiagnosticsError(diags)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "c.hcl:3:5") {
			t.Errorf("%s: %v, want %q at c.hcl:3:5", c.feed, err, c.want)
		}
	}
	_, path := writeConfig(t, `category "x" { feeds = "https://a.example" }`)
	if _, diags := Load(path, Options{}); !diags.HasErrors() {
		t.Error("feeds as a string accepted")
	}
	_, path = writeConfig(t, `
category "x" { feeds = [{ url = "https://a.example/1", refresh = "1h", name = "n" }] }
category "y" { feeds = [{ url = "https://a.example/2", refresh = "1h", name = "n" }] }`)
	if _, diags := Load(path, Options{}); !strings.Contains(DiagnosticsError(diags).Error(), "Duplicate feed name") {
		t.Error("duplicate feed names accepted")
	}
	_, path = writeConfig(t, `
category "x" { feeds = [{ url = "https://a.example/1", refresh = "1h" }] }
category "y" { feeds = [{ url = "https://a.example/1", refresh = "2h" }] }`)
	if _, diags := Load(path, Options{}); !strings.Contains(DiagnosticsError(diags).Error(), "Duplicate feed") {
		t.Error("one URL in two categories accepted")
	}
}

// TestFeedCorruptCacheIsAnError: a cached copy that does not parse fails the
// load (a reload keeps the running list), with the cache file's line.
func TestFeedCorruptCacheIsAnError(t *testing.T) {
	_, path := writeConfig(t, feedHCL)
	cfg, _ := Load(path, Options{})
	f := cfg.Feeds[0]
	os.MkdirAll(filepath.Dir(f.CacheFile), 0o755)
	os.WriteFile(f.CacheFile, []byte("ok.example\nnot a list line\n"), 0o644)
	_, diags := Load(path, Options{})
	if err := DiagnosticsError(diags); err == nil || !strings.Contains(err.Error(), f.CacheFile+":2:1") {
		t.Fatalf("corrupt cache: %v", err)
	}
}

func TestCountList(t *testing.T) {
	n, err := CountList("l", []byte("a.example\n||a.example^\n*.a.example\n0.0.0.0 b.example\n# c\n"))
	if err != nil || n != 3 {
		t.Fatalf("CountList = %d, %v; want 3 distinct", n, err)
	}
	if _, err := CountList("l", []byte("a.example\n@@||b.example^\n")); err == nil {
		t.Fatal("bad line accepted")
	}
}

func TestAllowRuleWithUnsignedFeedWarns(t *testing.T) {
	_, path := writeConfig(t, `
category "ok"  { feeds = [{ url = "https://a.example/1", refresh = "1h", cache_dir = "c", sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }] }
category "raw" { feeds = [{ url = "https://a.example/2?t=secret", refresh = "1h", cache_dir = "c" }] }
segment "s" {
  sources = ["10.0.0.0/8"]
  default = "deny"
  rule "a" {
    action     = "allow"
    categories = ["ok", "raw"]
  }
  rule "d" {
    action     = "deny"
    categories = ["raw"]
  }
}`)
	cfg, diags := Load(path, Options{})
	if diags.HasErrors() {
		t.Fatal(DiagnosticsError(diags))
	}
	var got []string
	for _, w := range cfg.Warnings {
		if w.Summary == "Allow rule fed by an unsigned feed" {
			got = append(got, FormatDiagnostic(w))
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], "c.hcl:9:25") || !strings.Contains(got[0], `"raw/1"`) || strings.Contains(got[0], "secret") {
		t.Fatalf("warnings %q", got)
	}
}
