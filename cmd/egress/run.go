package main

import (
	"fmt"
	"io"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "config file or directory (default: the embedded config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, diags := loadConfig(*cfgPath)
	if diags.HasErrors() {
		for _, d := range diags {
			fmt.Fprintln(stderr, d.Error())
		}
		return 1
	}
	printSummary(stdout, cfg)
	return 0
}

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "egress replay: not built yet")
	return 2
}
