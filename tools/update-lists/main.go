// Command update-lists rebuilds the category lists shipped in config/lists/
// from their public sources. It is a maintainer tool: it needs network access
// (or a local checkout of v2fly/domain-list-community) and is never run in CI.
//
//	go run ./tools/update-lists                      # fetch, rewrite config/lists/*.txt
//	go run ./tools/update-lists -v2fly ../dlc/data   # use a local checkout
//	go run ./tools/update-lists -check               # exit 1 if a list would change
//
// tools/update-lists/sources.json maps each list to v2fly data files (include:
// lines followed, domain:/full:/plain lines kept, regexp:/keyword: lines
// skipped, entries carrying a skip_attrs attribute dropped) and to local edits:
// config/lists/local/<name>.add (names added, with the reason in a comment) and
// config/lists/local/<name>.remove (names dropped with all their subdomains).
// The result is normalized, checked against the shared-infrastructure guard,
// deduplicated, stripped of names another entry already covers, sorted and
// written with a header naming its sources and the date.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Manifest is tools/update-lists/sources.json.
type Manifest struct {
	// V2fly is the base URL (or local folder) of the v2fly data/ directory.
	V2fly string `json:"v2fly"`
	Lists []List `json:"lists"`
}

// List describes one generated file config/lists/<Name>.txt.
type List struct {
	Name  string   `json:"name"`
	Title string   `json:"title"`
	Scope []string `json:"scope"` // header lines: what is in and what is deliberately out
	// V2fly data files whose entries are taken.
	V2fly []string `json:"v2fly"`
	// SkipAttrs drops v2fly entries carrying any of these attributes (e.g. "cn":
	// mainland-China-only hosts a device here never reaches).
	SkipAttrs []string `json:"skip_attrs"`
	// Lists are other lists of this manifest (built earlier) merged in.
	Lists []string `json:"lists"`
	// Sources are extra human-readable source lines for the header (publisher
	// documentation behind the local additions).
	Sources []string `json:"sources"`
}

const v2flyWeb = "https://github.com/v2fly/domain-list-community/tree/master/data"

func main() {
	var (
		manifest = flag.String("manifest", "tools/update-lists/sources.json", "manifest of lists and their sources")
		listsDir = flag.String("lists", "config/lists", "folder of the list files (local edits in its local/ subfolder)")
		v2fly    = flag.String("v2fly", "", "v2fly data/ base URL or local folder (default: the manifest's)")
		date     = flag.String("date", time.Now().UTC().Format("2006-01-02"), "date written in the headers")
		check    = flag.Bool("check", false, "write nothing; exit 1 if any list would change")
	)
	flag.Parse()
	if err := run(*manifest, *listsDir, *v2fly, *date, *check); err != nil {
		fmt.Fprintln(os.Stderr, "update-lists:", err)
		os.Exit(1)
	}
}

// errChanged is returned by -check when a list differs from its sources.
var errChanged = errors.New("lists differ from their sources; run update-lists")

func run(manifestPath, listsDir, v2fly, date string, check bool) error {
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestPath, err)
	}
	if v2fly == "" {
		v2fly = m.V2fly
	}
	fetch := fetcher(v2fly)
	built := map[string][]string{}
	changed := false
	for _, l := range m.Lists {
		names, header, err := build(l, fetch, listsDir, date, built)
		if err != nil {
			return fmt.Errorf("list %s: %w", l.Name, err)
		}
		built[l.Name] = names
		var buf bytes.Buffer
		if err := WriteList(&buf, header, names); err != nil {
			return err
		}
		path := filepath.Join(listsDir, l.Name+".txt")
		old, _ := os.ReadFile(path)
		if bytes.Equal(stripDate(old), stripDate(buf.Bytes())) {
			fmt.Fprintf(os.Stderr, "%s: %d entries, unchanged\n", path, len(names))
			continue
		}
		changed = true
		fmt.Fprintf(os.Stderr, "%s: %d entries, changed\n", path, len(names))
		if !check {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				return err
			}
		}
	}
	if check && changed {
		return errChanged
	}
	return nil
}

// stripDate drops the "Updated:" header line so that a rebuild that changes
// nothing but the day is not reported as a change.
func stripDate(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("# Updated: ")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func build(l List, fetch Fetcher, listsDir, date string, built map[string][]string) ([]string, []string, error) {
	r := &Resolver{Fetch: fetch, SkipAttrs: l.SkipAttrs,
		Warn: func(err error) { fmt.Fprintf(os.Stderr, "  skip malformed line %v\n", err) }}
	var names []string
	add := func(name, from string) {
		n, err := Normalize(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "  skip %s: %v\n", from, err)
			return
		}
		if !strings.Contains(n, ".") {
			fmt.Fprintf(os.Stderr, "  skip %s: %q is a whole top-level domain\n", from, n)
			return
		}
		if infra, ok := sharedInfra(n); ok {
			fmt.Fprintf(os.Stderr, "  skip %s: %q covers shared infrastructure %s\n", from, n, infra)
			return
		}
		names = append(names, n)
	}
	sources := []string{"Sources:"}
	for _, f := range l.V2fly {
		entries, err := r.Resolve(f)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			add(e.Name, e.Source)
		}
	}
	if len(l.V2fly) > 0 {
		sources = append(sources, "  v2fly/domain-list-community ("+v2flyWeb+"), include: lines followed:")
		sources = append(sources, wrap("    data/", l.V2fly, 84)...)
	}
	if s := r.Stats; s.Regexps+s.Keywords+s.AttrSkipped+s.Malformed > 0 {
		sources = append(sources, fmt.Sprintf("    (v2fly lines not used: %d regexp, %d keyword, %d with attribute %v, %d malformed)",
			s.Regexps, s.Keywords, s.AttrSkipped, strings.Join(l.SkipAttrs, ","), s.Malformed))
	}
	for _, other := range l.Lists {
		prev, ok := built[other]
		if !ok {
			return nil, nil, fmt.Errorf("list %q must come earlier in the manifest", other)
		}
		for _, n := range prev {
			add(n, other+".txt")
		}
		sources = append(sources, "  every entry of "+other+".txt")
	}
	addPath := filepath.Join(listsDir, "local", l.Name+".add")
	if extra, err := readLocalFile(addPath); err != nil {
		return nil, nil, err
	} else if extra != nil {
		for _, n := range extra {
			add(n, addPath)
		}
		sources = append(sources, "  config/lists/local/"+l.Name+".add (curated additions, each with its reason)")
	}
	sources = append(sources, prefixed("  ", l.Sources)...)
	rmPath := filepath.Join(listsDir, "local", l.Name+".remove")
	removals, err := readLocalFile(rmPath)
	if err != nil {
		return nil, nil, err
	}
	if removals != nil {
		sources = append(sources, "  config/lists/local/"+l.Name+".remove (names deliberately not listed)")
	}
	names = Compact(removeCovered(names, removals))

	header := []string{l.Title}
	header = append(header, "egress category list (SPEC 2): one name per line; \"name\" matches the name and")
	header = append(header, "every subdomain. '#' starts a comment.")
	header = append(header, "Generated by tools/update-lists from tools/update-lists/sources.json: change the")
	header = append(header, "sources or config/lists/local/"+l.Name+".{add,remove}, then rerun; do not edit by hand.")
	header = append(header, "Updated: "+date)
	header = append(header, "")
	header = append(header, l.Scope...)
	header = append(header, "")
	header = append(header, sources...)
	header = append(header, "")
	header = append(header, "Never listed: shared infrastructure (cloud, CDN and OS hosts such as amazonaws.com,")
	header = append(header, "cloudfront.net, akamaized.net, googleapis.com, gstatic.com, google.com, microsoft.com,")
	header = append(header, "apple.com); only a host that serves this category alone may sit under one of them.")
	header = append(header, fmt.Sprintf("Entries: %d", len(names)))
	return names, header, nil
}

// wrap joins items, each prefixed, into comma-separated lines of at most width
// bytes.
func wrap(prefix string, items []string, width int) []string {
	var out []string
	line := ""
	for i, it := range items {
		it = strings.TrimSpace(prefix) + it
		if i < len(items)-1 {
			it += ","
		}
		if line != "" && len(line)+1+len(it) > width {
			out = append(out, line)
			line = ""
		}
		if line == "" {
			line = "    " + it
		} else {
			line += " " + it
		}
	}
	if line != "" {
		out = append(out, line)
	}
	return out
}

func prefixed(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// removeCovered drops every name equal to or under a removal.
func removeCovered(names, removals []string) []string {
	var out []string
next:
	for _, n := range names {
		for _, r := range removals {
			if Covers(r, n) {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

// readLocalFile returns nil, nil when the file does not exist.
func readLocalFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := ReadLocal(path, f)
	if err == nil && names == nil {
		names = []string{}
	}
	return names, err
}

// fetcher reads data files from a local folder or over HTTPS.
func fetcher(base string) Fetcher {
	if !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://") {
		return func(name string) ([]byte, error) {
			if strings.ContainsAny(name, `/\`) {
				return nil, fmt.Errorf("bad data file name %q", name)
			}
			return os.ReadFile(filepath.Join(base, name))
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	return func(name string) ([]byte, error) {
		if strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("bad data file name %q", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/"+name, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %s", req.URL, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxFileBytes+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxFileBytes {
			return nil, fmt.Errorf("%s: %w", req.URL, ErrTooLong)
		}
		return b, nil
	}
}
