package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/egress-proxy/egress/internal/replay"
	"github.com/egress-proxy/egress/internal/rules"
)

const replayUsage = "usage: egress replay -config PATH [-top N] [-rules] [-json] [-fail-on-change] EVENTS.jsonl[.gz] | -"

// cmdReplay: exit 0 when it ran, 1 with -fail-on-change and a change, 2 on a
// config error, a usage error or an unreadable event file.
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("replay", stderr)
	cfgPath := fs.String("config", "", "candidate config file or directory")
	top := fs.Int("top", 50, "rows shown per section (0: all)")
	showRules := fs.Bool("rules", false, "also list events with the same action but another rule")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	failOnChange := fs.Bool("fail-on-change", false, "exit 1 when a decision changes (with -rules, a rule change counts too)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	// Allow flags after EVENTS too: "egress replay -config c events.jsonl -top 10".
	if len(rest) > 1 {
		if err := fs.Parse(rest[1:]); err != nil {
			return 2
		}
		rest = append(rest[:1], fs.Args()...)
	}
	if *cfgPath == "" || len(rest) != 1 || *top < 0 {
		fmt.Fprintln(stderr, replayUsage)
		return 2
	}
	cfg, diags := loadConfig(*cfgPath)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return 2
	}
	input := rest[0]
	var in io.Reader = os.Stdin
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			fmt.Fprintf(stderr, "egress replay: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	rep, err := replay.Run(cfg, in, replay.Options{Input: input})
	if err != nil && !errors.Is(err, replay.ErrRead) || rep == nil {
		fmt.Fprintf(stderr, "egress replay: %v\n", err)
		return 2
	}
	show := replay.Show{Top: *top, Rules: *showRules}
	var werr error
	if *asJSON {
		werr = rep.WriteJSON(stdout, show)
	} else {
		werr = rep.WriteText(stdout, show)
	}
	switch {
	case err != nil: // the report covers the lines read before the error
		fmt.Fprintf(stderr, "egress replay: %s: %v\n", input, err)
		return 2
	case werr != nil:
		fmt.Fprintf(stderr, "egress replay: %v\n", werr)
		return 2
	case *failOnChange && rep.Any(show):
		return 1
	}
	return 0
}
