package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/egress-proxy/egress/internal/discover"
	"github.com/egress-proxy/egress/internal/rules"
)

const discoverUsage = "usage: egress discover -config PATH -category NAME [-window 60s] [-top N] [-min-sources N] [-json] EVENTS.jsonl[.gz]... | -"

// cmdDiscover: exit 0 when it ran (candidates are for review, not failures),
// 2 on a config error, a usage error, an unknown category or an unreadable
// event file.
func cmdDiscover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("discover", stderr)
	cfgPath := fs.String("config", "", "config file or directory whose lists define the category and what is already listed")
	category := fs.String("category", "", "category whose hits open the windows (e.g. tiktok)")
	window := fs.Duration("window", discover.DefaultWindow, "how long after a hit a contact counts")
	top := fs.Int("top", 20, "candidates shown (0: all)")
	minSources := fs.Int("min-sources", discover.DefaultMinSources, "fewest distinct sources for a name to be listed")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	// Flags may follow the event files too.
	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if *cfgPath == "" || *category == "" || len(files) == 0 || *top < 0 || *window <= 0 || *minSources < 1 {
		fmt.Fprintln(stderr, discoverUsage)
		return 2
	}
	cfg, diags := loadConfig(*cfgPath)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return 2
	}
	if cfg.DiscoverCategory(*category) < 0 {
		var names []string
		for _, c := range cfg.Categories {
			names = append(names, c.Name)
		}
		fmt.Fprintf(stderr, "egress discover: no category %q in %s (categories: %s)\n", *category, *cfgPath, strings.Join(names, ", "))
		return 2
	}
	var inputs []discover.Input
	stdin := false
	for _, name := range files {
		if name == "-" {
			if stdin {
				fmt.Fprintln(stderr, "egress discover: - (standard input) given twice")
				return 2
			}
			stdin = true
			inputs = append(inputs, discover.Input{Name: "-", R: os.Stdin})
			continue
		}
		// Checked now, opened when the merge reaches the file's first event.
		if _, err := os.Stat(name); err != nil {
			fmt.Fprintf(stderr, "egress discover: %v\n", err)
			return 2
		}
		inputs = append(inputs, discover.Input{Name: name, Open: func() (io.ReadCloser, error) { return os.Open(name) }})
	}
	rep, err := discover.Run(cfg, inputs, discover.Options{Category: *category, Window: *window, MinSources: *minSources})
	if rep == nil {
		fmt.Fprintf(stderr, "egress discover: %v\n", err)
		return 2
	}
	var werr error
	if *asJSON {
		werr = rep.WriteJSON(stdout, *top)
	} else {
		werr = rep.WriteText(stdout, *top)
	}
	switch {
	case err != nil: // the report covers what was read
		fmt.Fprintf(stderr, "egress discover: %v\n", err)
		return 2
	case werr != nil:
		fmt.Fprintf(stderr, "egress discover: %v\n", werr)
		return 2
	}
	return 0
}
