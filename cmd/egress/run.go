package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/service"
	"github.com/hashicorp/hcl/v2"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "config file or directory (default: the embedded config)")
	logLevel := fs.String("log-level", "info", "process log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "egress run: unexpected argument %q (use -config PATH)\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "egress run: -log-level %q: %v\n", *logLevel, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	err := service.Run(context.Background(), service.Options{
		Load:    func() (*rules.Config, hcl.Diagnostics) { return loadConfig(*cfgPath) },
		Version: version,
		Commit:  buildCommit(),
		Log:     log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "egress run: %v\n", err)
		return 1
	}
	return 0
}
