package main

import (
	"fmt"
	"io"
	"time"

	"github.com/egress-proxy/egress/internal/feeds"
	"github.com/egress-proxy/egress/internal/rules"
)

// feedLines describes, for validate, check and test, the cached copy of each
// feed they worked on: these commands never fetch (they run offline), so they
// say how old the list they used is.
func feedLines(cfg *rules.Config, now time.Time) []string {
	var out []string
	for _, f := range cfg.Feeds {
		head := fmt.Sprintf("%s (category %q, %s)", f.Name, f.Category, feeds.Redact(f.URL))
		t, ok := feeds.CacheAge(&f.Spec)
		if !f.Cached || !ok {
			out = append(out, fmt.Sprintf("%s: no cached copy at %s; category %q holds none of its names until egress run fetches it", head, f.CacheFile, f.Category))
			continue
		}
		age := now.Sub(t).Round(time.Second)
		stale := ""
		if age > f.Refresh {
			stale = fmt.Sprintf(", older than its refresh of %s", f.Refresh)
		}
		out = append(out, fmt.Sprintf("%s: %d entries from the cached copy of %s (%s old%s)", head, f.Entries,
			t.UTC().Format(time.RFC3339), age, stale))
	}
	return out
}

func printFeeds(w io.Writer, prefix string, cfg *rules.Config) {
	for _, l := range feedLines(cfg, time.Now()) {
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
}
