package rules

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/feeds"
	"github.com/hashicorp/hcl/v2"
)

// Feed is one live list feed of a category (SPEC §10.3). The loader reads
// its last good copy from the cache as one of the category's lists; the
// service's refresh loop keeps that copy current (internal/feeds).
type Feed struct {
	feeds.Spec
	// Cached: a cached copy was read at load; Entries is its number of
	// distinct names (egress_feed_entries).
	Cached  bool
	Entries int
	Pos     string // file:line:col of the feed in the configuration
}

// feedAttrs are the attributes a feed object may have.
var feedAttrs = map[string]string{
	"url": "string", "refresh": "string", "name": "string", "timeout": "string",
	"max_bytes": "number", "max_shrink": "number", "sha256": "string", "public_key": "string",
	"signature_url": "string", "ca_file": "string", "cache_dir": "string",
}

// compileFeeds reads the feeds attribute of cat and the cached copy of each
// feed, and appends the cached names to pats.
func (c *compiler) compileFeeds(cat *rawCategory, pats []pattern) []pattern {
	if cat.Feeds == nil {
		return pats
	}
	val, diags := cat.Feeds.Value(nil)
	c.diags = append(c.diags, diags...)
	if diags.HasErrors() || val.IsNull() {
		return pats
	}
	whole := attrRange(cat.Body, "feeds", cat.DefRange)
	ty := val.Type()
	if !ty.IsTupleType() && !ty.IsListType() {
		c.errorf(whole, "Invalid feeds", "feeds is a list of objects: feeds = [{ url = \"https://...\", refresh = \"1h\" }].")
		return pats
	}
	base := c.dir(cat.DefRange.Filename)
	names := map[string]bool{}
	for _, f := range c.cfg.Feeds {
		names[f.Name] = true
	}
	i := -1
	for it := val.ElementIterator(); it.Next(); {
		i++
		_, ev := it.Element()
		rng := elemRange(cat.Body, "feeds", i, cat.DefRange)
		et := ev.Type()
		if ev.IsNull() || !et.IsObjectType() && !et.IsMapType() {
			c.errorf(rng, "Invalid feed", "Each feed is an object: { url = \"https://...\", refresh = \"1h\" }.")
			continue
		}
		attrs := map[string]string{}
		nums := map[string]*big.Float{}
		bad := false
		for ai := ev.ElementIterator(); ai.Next(); {
			k, v := ai.Element()
			key := k.AsString()
			want, known := feedAttrs[key]
			switch {
			case !known:
				c.errorf(rng, "Unknown feed attribute", "%q is not a feed attribute%s.", key, suggest(key, keys(feedAttrs)))
				bad = true
			case v.IsNull() || !v.IsKnown():
				c.errorf(rng, "Invalid feed attribute", "%s has no value.", key)
				bad = true
			case want == "string" && v.Type().FriendlyName() == "string":
				attrs[key] = v.AsString()
			case want == "number" && v.Type().FriendlyName() == "number":
				nums[key] = v.AsBigFloat()
			default:
				c.errorf(rng, "Invalid feed attribute", "%s must be a %s.", key, want)
				bad = true
			}
		}
		if bad {
			continue
		}
		f := &Feed{Spec: feeds.Spec{Category: cat.Name, Timeout: feeds.DefaultTimeout, MaxBytes: feeds.DefaultMaxBytes,
			MaxShrink: feeds.DefaultMaxShrink},
			Pos: fmt.Sprintf("%s:%d:%d", rng.Filename, rng.Start.Line, rng.Start.Column)}
		if err := c.feedSpec(f, attrs, nums, base); err != nil {
			c.errorf(rng, "Invalid feed", "%v", err)
			continue
		}
		if f.Name == "" {
			f.Name = fmt.Sprintf("%s/%d", cat.Name, i+1)
		}
		if names[f.Name] {
			c.errorf(rng, "Duplicate feed name", "A feed named %q is already defined; feed names label metrics and must be unique.", f.Name)
			continue
		}
		names[f.Name] = true
		if other := c.feedCache(f.CacheFile); other != "" {
			c.errorf(rng, "Duplicate feed", "Feed %q has the URL and cache_dir of feed %q; list the URL once, in one category.", f.Name, other)
			continue
		}
		pats = c.readFeedCache(f, rng, pats)
		c.cfg.Feeds = append(c.cfg.Feeds, f)
	}
	return pats
}

// warnUnsignedFeed warns when an allow rule uses a category fed by a feed
// that is neither signed nor pinned: whoever can change that file (its
// publisher, or anyone who holds its server's certificate) decides what the
// rule lets through.
func (c *compiler) warnUnsignedFeed(rr *rawRule, i int, category string) {
	for _, f := range c.cfg.Feeds {
		if f.Category == category && f.PublicKey == nil && f.SHA256 == nil {
			c.diags = append(c.diags, warningAt(elemRange(rr.Body, "categories", i, rr.DefRange), "Allow rule fed by an unsigned feed",
				"Rule %q allows category %q, which feed %q (%s) fills without public_key or sha256: whoever can change that list decides what this rule allows. Sign the feed, or use feeds in deny rules only.",
				rr.Name, category, f.Name, feeds.Redact(f.URL)))
			return
		}
	}
}

// feedCache returns the name of the feed already using cache file p, or "".
func (c *compiler) feedCache(p string) string {
	for _, f := range c.cfg.Feeds {
		if f.CacheFile == p {
			return f.Name
		}
	}
	return ""
}

// feedSpec fills f from the attributes of its object.
func (c *compiler) feedSpec(f *Feed, attrs map[string]string, nums map[string]*big.Float, base string) error {
	f.URL = attrs["url"]
	if f.URL == "" {
		return errors.New("url is required: the https address of the list")
	}
	if err := feeds.CheckURL(f.URL); err != nil {
		return fmt.Errorf("url = %q: %v", feeds.Redact(f.URL), err)
	}
	f.Name = attrs["name"]
	if f.Name != "" && (len(f.Name) > 64 || strings.ContainsAny(f.Name, " \t\n\"\\")) {
		return fmt.Errorf("name = %q: up to 64 characters, no spaces or quotes (it labels metrics)", f.Name)
	}
	dur := func(key string, dst *time.Duration, min time.Duration) error {
		s, ok := attrs[key]
		if !ok {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < min {
			return fmt.Errorf("%s = %q: a duration of at least %s, e.g. \"1h\"", key, s, min)
		}
		*dst = d
		return nil
	}
	if _, ok := attrs["refresh"]; !ok {
		return errors.New("refresh is required: how often to fetch the list, e.g. \"1h\"")
	}
	if err := dur("refresh", &f.Refresh, feeds.MinRefresh); err != nil {
		return err
	}
	if err := dur("timeout", &f.Timeout, time.Second); err != nil {
		return err
	}
	if n, ok := nums["max_bytes"]; ok {
		v, acc := n.Int64()
		if acc != big.Exact || v < 1 || v > 1<<30 {
			return fmt.Errorf("max_bytes = %s: a whole number of bytes from 1 to 1 GiB", n.String())
		}
		f.MaxBytes = v
	}
	if n, ok := nums["max_shrink"]; ok {
		v, _ := n.Float64()
		if v < 0 || v > 1 {
			return fmt.Errorf("max_shrink = %s: a fraction from 0 (the list may not shrink) to 1 (no guard)", n.String())
		}
		f.MaxShrink = v
	}
	if s, ok := attrs["sha256"]; ok {
		b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s), "sha256:"))
		if err != nil || len(b) != 32 {
			return fmt.Errorf("sha256 = %q: 64 hex digits, the digest of the whole list", s)
		}
		f.SHA256 = b
	}
	if s, ok := attrs["public_key"]; ok {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			b, err = hex.DecodeString(s)
		}
		if err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("public_key = %q: an Ed25519 public key, 32 bytes in base64 or hex", s)
		}
		f.PublicKey = ed25519.PublicKey(b)
	}
	if s, ok := attrs["signature_url"]; ok {
		if f.PublicKey == nil {
			return errors.New("signature_url needs public_key, the key that verifies it")
		}
		if err := feeds.CheckURL(s); err != nil {
			return fmt.Errorf("signature_url = %q: %v", s, err)
		}
		f.SignatureURL = s
	}
	if s, ok := attrs["ca_file"]; ok {
		f.CAFile = c.join(base, s)
	}
	dir := feeds.DefaultCacheDir
	if s, ok := attrs["cache_dir"]; ok {
		dir = c.join(base, s)
	}
	if c.fsys == nil && !filepath.IsAbs(dir) {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	f.CacheFile = feeds.CacheFile(dir, f.URL)
	return nil
}

// readFeedCache reads f's last good copy, if any, as one of the category's
// lists. A missing copy is a warning (the first fetch writes it); a copy that
// does not parse is an error, like a list file.
func (c *compiler) readFeedCache(f *Feed, rng *hcl.Range, pats []pattern) []pattern {
	c.files = append(c.files, f.CacheFile) // watched: a new copy reloads
	data, err := c.readFile(f.CacheFile)
	if err != nil {
		c.diags = append(c.diags, warningAt(rng, "Feed without a cached copy",
			"Feed %q (%s) has no last good copy at %s yet: category %q holds none of its names until the first successful fetch.",
			f.Name, feeds.Redact(f.URL), f.CacheFile, f.Category))
		fmt.Fprintf(c.hash, "feed\x00%s\x00none\x00", f.Name)
		return pats
	}
	fmt.Fprintf(c.hash, "feed\x00%s\x00%d\x00", f.Name, len(data))
	c.hash.Write(data)
	n := len(pats)
	var ld hcl.Diagnostics
	pats, ld = parseList(f.CacheFile, string(data), pats)
	c.diags = append(c.diags, ld...)
	f.Cached, f.Entries = true, distinctPatterns(pats[n:])
	return pats
}

func distinctPatterns(pats []pattern) int {
	if len(pats) < 2 {
		return len(pats)
	}
	seen := make(map[pattern]struct{}, len(pats))
	for _, p := range pats {
		seen[p] = struct{}{}
	}
	return len(seen)
}

// CountList parses a list (plain, hosts or adblock lines, like a category's
// list file) and returns its number of distinct names; a line that does not
// parse is an error.
func CountList(name string, data []byte) (int, error) {
	// One pattern per line is the common case: size the slice once.
	pats, diags := parseList(name, string(data), make([]pattern, 0, bytes.Count(data, []byte{'\n'})+1))
	if diags.HasErrors() {
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				return 0, fmt.Errorf("%s (%d bad lines)", FormatDiagnostic(d), len(diags))
			}
		}
	}
	return distinctPatterns(pats), nil
}
