package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/egress-proxy/egress/config"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/hashicorp/hcl/v2"
)

// loadConfig loads PATH, or the embedded default when path is "".
func loadConfig(path string) (*rules.Config, hcl.Diagnostics) {
	if path == "" {
		cfg, diags := rules.Load(config.DefaultPath, rules.Options{FS: config.FS})
		if cfg != nil {
			cfg.Source = "<embedded default>"
		}
		return cfg, diags
	}
	return rules.Load(path, rules.Options{})
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("egress "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// oneArg parses flags and returns the single positional PATH (or -config).
func pathArg(fs *flag.FlagSet, args []string, cfgFlag *string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	// Allow flags after PATH too: "egress test cfg.hcl -v".
	if len(rest) > 1 {
		if err := fs.Parse(rest[1:]); err != nil {
			return "", err
		}
		rest = append(rest[:1], fs.Args()...)
	}
	switch {
	case len(rest) == 1 && *cfgFlag == "":
		return rest[0], nil
	case len(rest) == 0 && *cfgFlag != "":
		return *cfgFlag, nil
	}
	return "", fmt.Errorf("expected exactly one PATH (a .hcl file or a directory)")
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", "", "config file or directory (or give it as the argument)")
	path, err := pathArg(fs, args, cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "egress validate: %v\nusage: egress validate PATH\n", err)
		return 2
	}
	cfg, diags := loadConfig(path)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		errs := 0
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				errs++
			}
		}
		fmt.Fprintf(stderr, "%s: %d error(s); the configuration is not valid\n", path, errs)
		return 1
	}
	printSummary(stdout, cfg)
	return 0
}

func printSummary(w io.Writer, cfg *rules.Config) {
	fmt.Fprintf(w, "%s: valid (config_version %s)\n", cfg.Source, cfg.Version)
	fmt.Fprintf(w, "  proxy:       %s (proxy_protocol %t)\n", cfg.Proxy.Listen, cfg.Proxy.ProxyProtocol)
	if t := cfg.Proxy.TLS; t != nil {
		fmt.Fprintf(w, "  proxy_tls:   %s (client certificates %s)\n", t.Listen, map[bool]string{true: "required", false: "off"}[t.RequiresClientCert()])
	}
	if a := cfg.Auth.Sources; !a.Empty() {
		var src []string
		if a.Htpasswd != nil {
			src = append(src, "htpasswd")
		}
		if a.LDAP != nil {
			src = append(src, "ldap")
		}
		if a.Kerberos != nil {
			src = append(src, "kerberos")
		}
		fmt.Fprintf(w, "  auth:        %s (Basic on the plain listener %t, cache %s)\n", strings.Join(src, ", "), cfg.Auth.AllowBasicWithoutTLS, a.CacheTTL)
	}
	if cfg.Transparent.Enabled {
		fmt.Fprintf(w, "  transparent: https %s -> :%d, http %s -> :%d (proxy_protocol %t)\n",
			orOff(cfg.Transparent.HTTPSListen), cfg.Transparent.HTTPSPort, orOff(cfg.Transparent.HTTPListen), cfg.Transparent.HTTPPort, cfg.Transparent.ProxyProtocol)
		if cfg.Transparent.QUICListen != "" {
			fmt.Fprintf(w, "  transparent: quic %s -> udp :%d\n", cfg.Transparent.QUICListen, cfg.Transparent.QUICPort)
		}
	}
	fmt.Fprintf(w, "  admin:       %s\n", cfg.Admin.Listen)
	fmt.Fprintf(w, "  log:         %s to %s\n", cfg.Log.Format, cfg.Log.Output)
	names := make([]string, 0, len(cfg.Categories))
	for _, c := range cfg.Categories {
		names = append(names, fmt.Sprintf("%s (%d)", c.Name, c.Domains))
	}
	fmt.Fprintf(w, "  categories:  %d, %d distinct domains: %s\n", len(cfg.Categories), cfg.Policy.DomainCount(), strings.Join(names, ", "))
	for _, s := range cfg.Policy.Segments() {
		srcs := make([]string, 0, len(s.Sources))
		for _, p := range s.Sources {
			srcs = append(srcs, p.String())
		}
		fmt.Fprintf(w, "  segment %-20q %d rules, default %s, sources %s\n", s.Name, len(s.Rules()), s.Default, strings.Join(srcs, " "))
	}
	printFeeds(w, "  feed ", cfg)
	fmt.Fprintf(w, "  tests:       %d\n", len(cfg.Tests))
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	cfgPath := fs.String("config", "", "config file or directory (default: the embedded config)")
	source := fs.String("source", "", "client IP address (chooses the segment)")
	host := fs.String("host", "", "destination name or IP: the CONNECT host, URL host or Host header")
	sni := fs.String("sni", "", "TLS SNI if it differs from -host (default: the host; -sni \"\" for none)")
	port := fs.Int("port", rules.DefaultTestPort, "destination port")
	user := fs.String("user", "", "the client's user name, as identified by the explicit proxy (default: unidentified)")
	groupList := fs.String("groups", "", "the user's groups, comma-separated (with -user)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *source == "" || *host == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: egress check [-config PATH] -source IP -host NAME [-port N] [-sni NAME] [-user NAME [-groups a,b]]")
		return 2
	}
	var groups []string
	for _, g := range strings.Split(*groupList, ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	if len(groups) > 0 && *user == "" {
		fmt.Fprintln(stderr, "egress check: -groups needs -user")
		return 2
	}
	sort.Strings(groups)
	src, err := netip.ParseAddr(*source)
	if err != nil {
		fmt.Fprintf(stderr, "egress check: -source %q is not an IP address\n", *source)
		return 2
	}
	if *port < 1 || *port > 65535 {
		fmt.Fprintf(stderr, "egress check: -port %d is not a port\n", *port)
		return 2
	}
	cfg, diags := loadConfig(*cfgPath)
	if diags.HasErrors() {
		rules.WriteDiagnostics(stderr, diags)
		return 2
	}
	src = src.Unmap()
	names := rules.Names{Source: src, Target: *host, TLS: true, Port: uint16(*port), User: *user, Groups: groups}
	sniSet := false
	fs.Visit(func(f *flag.Flag) { sniSet = sniSet || f.Name == "sni" })
	// As a client would send it: the SNI is the host unless -sni says
	// otherwise (-sni "" = a ClientHello without SNI).
	names.Inner, names.HasInner = *host, true
	if sniSet {
		names.Inner, names.HasInner = *sni, *sni != ""
	}
	d := cfg.DecideAs(names)
	fmt.Fprintf(stdout, "decision: %s\n", d.Action)
	if names.User != "" {
		fmt.Fprintf(stdout, "user: %s\n", names.User)
		fmt.Fprintf(stdout, "groups: %s\n", orNone(strings.Join(names.Groups, ",")))
	}
	fmt.Fprintf(stdout, "segment: %s\n", orNone(d.SegmentName()))
	fmt.Fprintf(stdout, "rule: %s\n", orNone(d.RuleName()))
	fmt.Fprintf(stdout, "ruleset: %s\n", orNone(d.Ruleset()))
	fmt.Fprintf(stdout, "reason: %s\n", d.Reason)
	if d.Rule != nil && d.Rule.HasException() {
		fmt.Fprintf(stdout, "exception: owner=%s ticket=%s expires=%s\n", orNone(d.Rule.Owner), orNone(d.Rule.Ticket), orNone(d.Rule.ExpiresText))
	}
	for _, m := range d.Monitor {
		fmt.Fprintf(stdout, "monitor: %s rule %q of %s %q would %s\n", m.Pos, m.Name, m.RulesetKind, m.Ruleset, m.Action)
	}
	fmt.Fprintf(stdout, "config_version: %s\n", cfg.Version)
	printFeeds(stdout, "feed: ", cfg)
	fmt.Fprintln(stdout, "trace:")
	for _, line := range traceLines(cfg, names, d) {
		fmt.Fprintf(stdout, "  %s\n", line)
	}
	return 0
}

// traceLines explains, step by step, how names were decided.
func traceLines(cfg *rules.Config, n rules.Names, d rules.Decision) []string {
	var out []string
	seg, ok := cfg.Policy.SegmentFor(n.Source)
	if !ok {
		return append(out, fmt.Sprintf("source %s matches no segment's sources: deny (unknown_source)", n.Source))
	}
	out = append(out, fmt.Sprintf("source %s -> segment %q (longest prefix match)", n.Source, seg.Name))
	if n.User != "" {
		out = append(out, fmt.Sprintf("identity: user %q, groups [%s]", n.User, strings.Join(n.Groups, ", ")))
	} else if seg.WantsIdentity() {
		out = append(out, fmt.Sprintf("identity: none (segment %q: require_auth %t, rules matching users or groups %t)", seg.Name, seg.RequireAuth, seg.IdentityRules))
	}
	explain := func(label, raw string) {
		req, err := requestFor(n.Source, raw, n.Port)
		req.User, req.Groups = n.User, n.Groups
		if err != nil {
			out = append(out, fmt.Sprintf("%s %q is not a valid hostname: deny (invalid_host)", label, raw))
			return
		}
		what := req.Host
		if what == "" {
			what = req.IP.String()
		}
		out = append(out, fmt.Sprintf("%s %q -> %s, port %d", label, raw, what, n.Port))
		dd, steps := cfg.Policy.Explain(req)
		for _, s := range steps {
			if s.Rule == "" {
				out = append(out, "  "+s.Outcome)
				continue
			}
			out = append(out, fmt.Sprintf("  %s rule %q (%s): %s", s.Ruleset, s.Rule, s.Pos, s.Outcome))
		}
		out = append(out, fmt.Sprintf("  => %s (%s)", dd.Action, dd.Reason))
	}
	explain("host", n.Target)
	if n.HasInner && n.Inner != n.Target {
		explain("sni", n.Inner)
	}
	switch d.Reason {
	case rules.ReasonSNIMismatch, rules.ReasonMissingSNI, rules.ReasonECH:
		out = append(out, fmt.Sprintf("protocol check: %s (see the tls block)", d.Reason))
	case rules.ReasonAuthRequired:
		out = append(out, "identity check: the proxy answers 407 until the client identifies (auth_required)")
	}
	out = append(out, fmt.Sprintf("decision: %s (%s)", d.Action, d.Reason))
	return out
}

func requestFor(src netip.Addr, raw string, port uint16) (rules.Request, error) {
	return rules.NormalizeRequest(src, raw, port)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("test", stderr)
	cfgPath := fs.String("config", "", "config file or directory (or give it as the argument)")
	path, err := pathArg(fs, args, cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "egress test: %v\nusage: egress test PATH\n", err)
		return 2
	}
	cfg, diags := loadConfig(path)
	if diags.HasErrors() {
		rules.WriteDiagnostics(stderr, diags)
		return 2
	}
	printFeeds(stdout, "feed ", cfg)
	start := time.Now()
	pass, fail := 0, 0
	for _, r := range cfg.RunTests() {
		if r.Pass {
			pass++
			fmt.Fprintf(stdout, "PASS %s\n", r.Test.Name)
			continue
		}
		fail++
		fmt.Fprintf(stdout, "FAIL %s: %s [%s]\n", r.Test.Name, r.Why, r.Test.Pos)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed (%d tests in %s)\n", pass, fail, pass+fail, time.Since(start).Round(time.Microsecond))
	if fail > 0 {
		return 1
	}
	return 0
}
