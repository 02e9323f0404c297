package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// ErrInvalidName is returned for a name that is not a valid hostname (SPEC 8,
// "Names").
var ErrInvalidName = errors.New("invalid hostname")

// ValidName reports whether s is a normalized hostname as SPEC 8 defines it:
// lower-case labels of 1–63 bytes of a-z, 0-9, '-' and '_', not starting or
// ending with '-', at most 253 bytes in all.
func ValidName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Normalize lower-cases a name and drops one trailing dot. It returns
// ErrInvalidName if the result is not a valid hostname. Internationalized names
// must already be in their ASCII (punycode) form: v2fly stores them that way.
func Normalize(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if !ValidName(s) {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
	}
	return s, nil
}

// Covers reports whether list entry parent (name and all subdomains) matches
// name.
func Covers(parent, name string) bool {
	return name == parent || strings.HasSuffix(name, "."+parent)
}

// neverList is shared infrastructure: an entry equal to one of these names, or a
// parent of one, would deny ordinary work (cloud APIs, CDNs serving thousands of
// unrelated sites, operating system services). Such entries are dropped with a
// warning. A specific host under one of them (one customer's CDN hostname, such
// as p16-tiktokcdn-com.akamaized.net) is kept: it serves only that customer.
var neverList = []string{
	"akadns.net", "akamai.net", "akamaiedge.net", "akamaihd.net", "akamaized.net",
	"amazon.com", "amazonaws.com", "apple.com", "azureedge.net", "azurefd.net",
	"b-cdn.net", "cdn.cloudflare.net", "cloudflare.com", "cloudflare.net", "cloudfront.net",
	"edgekey.net", "edgesuite.net", "fastly.net", "fastlylb.net", "github.com",
	"githubusercontent.com", "google.com", "googleapis.com", "googleusercontent.com",
	"gstatic.com", "icloud.com", "live.com", "llnwd.net", "llnwi.net",
	"microsoft.com", "microsoftonline.com", "office.com", "office.net", "omtrdc.net",
	"sentry.io", "ssl-images-amazon.com", "windows.com", "windows.net", "windowsupdate.com",
	"zendesk.com",
}

// sharedInfra returns the neverList name that entry equals or is a parent of.
func sharedInfra(entry string) (string, bool) {
	for _, n := range neverList {
		if Covers(entry, n) {
			return n, true
		}
	}
	return "", false
}

// Compact sorts names, removes duplicates and every name that an earlier,
// shorter entry already covers (a subdomain of another entry is redundant).
func Compact(names []string) []string {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	var out []string
	for n := range set {
		redundant := false
		for p := n; ; {
			i := strings.IndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[i+1:]
			if set[p] {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// ReadLocal reads a local additions or removals file: one name per line, '#'
// comments and blank lines ignored. Every name must be valid.
func ReadLocal(file string, r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		name, err := Normalize(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out = append(out, name)
	}
	return out, sc.Err()
}

// WriteList writes a list file: the header lines (each prefixed "# "), a
// blank line, then one name per line.
func WriteList(w io.Writer, header []string, names []string) error {
	bw := bufio.NewWriter(w)
	for _, h := range header {
		if h == "" {
			fmt.Fprintln(bw, "#")
			continue
		}
		fmt.Fprintf(bw, "# %s\n", h)
	}
	fmt.Fprintln(bw)
	for _, n := range names {
		fmt.Fprintln(bw, n)
	}
	return bw.Flush()
}
