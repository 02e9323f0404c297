package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped lists, read the way SPEC 2 defines plain list files. This test
// checks their hygiene without internal/rules: valid normalized names, no
// duplicates, no entry covered by another entry, a dated header, no shared
// infrastructure, and the key domains in (and out of) the right categories.

const listsDir = "../../config/lists"

var shipped = []string{"tiktok", "social-media", "recreational", "doh", "ech"}

func loadList(t *testing.T, name string) (entries []string, header string) {
	t.Helper()
	f, err := os.Open(filepath.Join(listsDir, name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hb strings.Builder
	sc := bufio.NewScanner(f)
	inHeader := true
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if inHeader {
				hb.WriteString(line + "\n")
			}
			continue
		}
		inHeader = false
		if strings.TrimSpace(line) == "" {
			continue
		}
		entries = append(entries, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return entries, hb.String()
}

func matches(entries []string, host string) bool {
	for _, e := range entries {
		if Covers(e, host) {
			return true
		}
	}
	return false
}

func TestShippedListsHygiene(t *testing.T) {
	for _, name := range shipped {
		t.Run(name, func(t *testing.T) {
			entries, header := loadList(t, name)
			if len(entries) == 0 {
				t.Fatal("no entries")
			}
			for _, want := range []string{"Updated: 2026-11-22", "Scope:", "Sources:", "Never listed: shared infrastructure"} {
				if !strings.Contains(header, want) {
					t.Errorf("header lacks %q", want)
				}
			}
			seen := map[string]bool{}
			for _, e := range entries {
				if !ValidName(e) || !strings.Contains(e, ".") {
					t.Errorf("invalid entry %q", e)
				}
				if seen[e] {
					t.Errorf("duplicate entry %q", e)
				}
				seen[e] = true
				if infra, bad := sharedInfra(e); bad {
					t.Errorf("entry %q covers shared infrastructure %s", e, infra)
				}
			}
			for _, e := range entries {
				for p := e; strings.Contains(p, "."); {
					p = p[strings.IndexByte(p, '.')+1:]
					if seen[p] {
						t.Errorf("entry %q is redundant: %q covers it", e, p)
					}
				}
			}
		})
	}
}

func TestShippedListsKeyDomains(t *testing.T) {
	lists := map[string][]string{}
	for _, name := range shipped {
		lists[name], _ = loadList(t, name)
	}
	for _, tc := range []struct {
		host string
		in   []string // lists that must match
	}{
		{"www.tiktok.com", []string{"tiktok", "social-media"}},
		{"v16-webapp.tiktok.com", []string{"tiktok", "social-media"}},
		{"tiktokcdn.com", []string{"tiktok", "social-media"}},
		{"p16-sign-va.tiktokcdn.com", []string{"tiktok", "social-media"}},
		{"v16m.tiktokcdn-us.com", []string{"tiktok", "social-media"}},
		{"byteoversea.com", []string{"tiktok", "social-media"}},
		{"www.facebook.com", []string{"social-media"}},
		{"www.instagram.com", []string{"social-media"}},
		{"x.com", []string{"social-media"}},
		{"web.whatsapp.com", []string{"social-media"}},
		{"www.netflix.com", []string{"recreational"}},
		{"candycrushsaga.com", []string{"recreational"}},
		{"store.steampowered.com", []string{"recreational"}},
		{"open.spotify.com", []string{"recreational"}},
		{"www.primevideo.com", []string{"recreational"}},
		{"dns.google", []string{"doh"}},
		{"mozilla.cloudflare-dns.com", []string{"doh"}},
		{"cloudflare-ech.com", []string{"ech"}},
		// Must match no list at all.
		{"gouv.fr", nil},
		{"www.gouv.fr", nil},
		{"gov.uk", nil},
		{"github.com", nil},
		{"www.linkedin.com", nil},
		{"www.youtube.com", nil},
		{"login.microsoftonline.com", nil},
		{"outlook.office365.com", nil},
		{"www.microsoft.com", nil},
		{"www.amazon.com", nil},
		{"s3.amazonaws.com", nil},
		{"www.google.com", nil},
		{"fonts.gstatic.com", nil},
		{"www.apple.com", nil},
		{"www.cloudflare.com", nil},
		{"docs.unrealengine.com", nil},
		{"rocksdb.org", nil},
	} {
		want := map[string]bool{}
		for _, l := range tc.in {
			want[l] = true
		}
		for _, name := range shipped {
			if got := matches(lists[name], tc.host); got != want[name] {
				t.Errorf("%s in %s: got %v, want %v", tc.host, name, got, want[name])
			}
		}
	}
}

// TestSocialMediaContainsTikTok pins the manifest's "lists": ["tiktok"].
func TestSocialMediaContainsTikTok(t *testing.T) {
	social, _ := loadList(t, "social-media")
	tiktok, _ := loadList(t, "tiktok")
	for _, e := range tiktok {
		if !matches(social, e) {
			t.Errorf("social-media does not cover tiktok entry %q", e)
		}
	}
}
