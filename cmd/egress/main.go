// Command egress is the HTTPS egress proxy and its policy tools. This package
// is the command line only: flags, output and wiring; the work is done in
// internal/.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// Set at build time: -ldflags "-X main.version=1.2.3 -X main.commit=abc".
var (
	version = "dev"
	commit  = ""
)

const usage = `egress: HTTPS egress proxy that decides by SNI, CONNECT host and Host, without decrypting.

Usage:
  egress run      [-config PATH]                                  serve (default: embedded config)
  egress validate PATH                                            check a config; exit 0 ok, 1 errors
  egress check    [-config PATH] -source IP -host NAME [-port N] [-sni NAME]
                                                                  explain one decision
  egress test     PATH                                            run the config's test blocks
  egress replay   -config PATH EVENTS.jsonl                       what a new config changes in recorded events
  egress discover -config PATH -category NAME EVENTS...           unlisted names contacted right after the category's hits
  egress lint     PATH [-json]                                    static review findings; exit 0 clean, 1 findings, 2 config error
  egress report   -config PATH [-events FILE]... [-format html|json|md] [-o FILE]
                                                                  attestation: what is denied, exceptions, tests, hits
  egress version                                                  version, commit, Go version

PATH is one .hcl file or a directory of them. See docs/configuration.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "discover":
		return cmdDiscover(args[1:], stdout, stderr)
	case "lint":
		return cmdLint(args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "egress %s\ncommit: %s\ngo: %s\n", version, buildCommit(), runtime.Version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "egress: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// buildCommit is the -X commit, else the VCS revision Go stamped in the binary.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}
