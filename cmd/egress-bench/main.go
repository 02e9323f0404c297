// Command egress-bench is a loopback load generator for egress and its peers
// (Squid, HAProxy): new CONNECT tunnels, transparent TLS connections,
// absolute-URI HTTP requests, one-tunnel throughput and idle-tunnel memory,
// against an in-process TLS and HTTP origin. It only dials loopback
// addresses, and every run is bounded by a duration and an iteration cap.
// See docs/performance.md and bench/compare.sh.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// Mode is what one run measures.
type Mode string

// The modes.
const (
	ModeConnect     Mode = "connect"     // CONNECT + TLS handshake (SNI) + one GET, per iteration
	ModeTransparent Mode = "transparent" // TLS straight to a transparent listener + one GET
	ModeHTTP        Mode = "http"        // absolute-URI GET through the proxy (keep-alive)
	ModeDirect      Mode = "direct"      // as connect, without a proxy
	ModeThroughput  Mode = "throughput"  // one tunnel, N bytes each way
	ModeIdle        Mode = "idle"        // hold N TLS tunnels, report proxy RSS per tunnel
)

// Via is how throughput and idle reach the origin.
type Via string

// The paths to the origin.
const (
	ViaDirect      Via = "direct"
	ViaConnect     Via = "connect"
	ViaTransparent Via = "transparent"
	// ViaUnidentified (idle only): connections to a proxy with require_auth
	// that sent a CONNECT without credentials, got their 407, and stay open.
	ViaUnidentified Via = "unidentified"
)

var errUsage = errors.New("usage")

// config is the parsed command line.
type config struct {
	mode       Mode
	via        Via
	proxy      string
	name       string
	originTLS  string
	originHTTP string
	conc       int
	dur        time.Duration
	maxIter    int64
	bytes      int64
	tunnels    int
	pid        int
	settle     time.Duration
	timeout    time.Duration
	label      string
	figure     string
	round      int
	jsonOut    bool
	report     string
	gobench    string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "egress-bench:", err)
		}
		return 2
	}
	if cfg.gobench != "" {
		if err := convertGoBenchFile(cfg.gobench, stdout); err != nil {
			fmt.Fprintln(stderr, "egress-bench:", err)
			return 1
		}
		return 0
	}
	if cfg.report != "" {
		if err := printReport(cfg.report, stdout); err != nil {
			fmt.Fprintln(stderr, "egress-bench:", err)
			return 1
		}
		return 0
	}
	res, err := execute(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "egress-bench:", err)
		return 1
	}
	fmt.Fprintln(stderr, res.human())
	if cfg.jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	if res.OK == 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("egress-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var mode, via string
	fs.StringVar(&mode, "mode", "connect", "connect | transparent | http | direct | throughput | idle")
	fs.StringVar(&via, "via", "connect", "throughput and idle: direct | connect | transparent; idle also: unidentified (held after a 407); http: direct (straight to the origin) or connect (through -proxy)")
	fs.StringVar(&c.proxy, "proxy", "", "proxy address (the transparent listener for -mode transparent / -via transparent); loopback only")
	fs.StringVar(&c.name, "name", "bench.test", "origin name: CONNECT host, SNI, Host (the proxy must map it to 127.0.0.1)")
	fs.StringVar(&c.originTLS, "origin-tls", "127.0.0.1:0", "listen address of the in-process TLS origin")
	fs.StringVar(&c.originHTTP, "origin-http", "127.0.0.1:0", "listen address of the in-process plain HTTP origin")
	fs.IntVar(&c.conc, "c", 64, "concurrent workers (1-10000)")
	fs.DurationVar(&c.dur, "d", 10*time.Second, "duration of the run (throughput: deadline of the transfer; idle: deadline of opening)")
	fs.Int64Var(&c.maxIter, "n", 1_000_000, "hard cap on iterations (1-10000000)")
	fs.Int64Var(&c.bytes, "bytes", 1<<30, "throughput: bytes each way")
	fs.IntVar(&c.tunnels, "tunnels", 2000, "idle: tunnels to hold open")
	fs.IntVar(&c.pid, "pid", 0, "proxy pid: RSS (idle) and CPU time per iteration from /proc")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "idle: wait after opening before reading RSS")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of one iteration")
	fs.StringVar(&c.label, "label", "", "free text copied into the JSON (e.g. the proxy's name)")
	fs.StringVar(&c.figure, "figure", "", "free text copied into the JSON (the figure this run measures)")
	fs.IntVar(&c.round, "round", 0, "round number copied into the JSON (the report counts the rounds a target was met in)")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object on stdout (the human line goes to stderr)")
	fs.StringVar(&c.report, "report", "", "instead of a run: read JSON lines from this file and print the comparison table")
	fs.StringVar(&c.gobench, "gobench", "", "instead of a run: convert this file of `go test -bench 'Decide1M|Compile1M' -benchmem` output to JSON lines")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	c.mode, c.via = Mode(mode), Via(via)
	if c.report != "" || c.gobench != "" {
		return c, nil
	}
	return c, c.validate()
}

// validate checks ranges and that every address is loopback.
func (c *config) validate() error {
	switch c.mode {
	case ModeConnect, ModeTransparent, ModeHTTP, ModeDirect, ModeThroughput, ModeIdle:
	default:
		return fmt.Errorf("%w: unknown -mode %q", errUsage, c.mode)
	}
	switch c.via {
	case ViaDirect, ViaConnect, ViaTransparent:
	case ViaUnidentified:
		if c.mode != ModeIdle {
			return fmt.Errorf("%w: -via unidentified is for -mode idle", errUsage)
		}
	default:
		return fmt.Errorf("%w: unknown -via %q", errUsage, c.via)
	}
	if c.conc < 1 || c.conc > 10000 {
		return fmt.Errorf("%w: -c %d out of 1-10000", errUsage, c.conc)
	}
	if c.dur <= 0 || c.dur > 10*time.Minute {
		return fmt.Errorf("%w: -d %v out of (0, 10m]", errUsage, c.dur)
	}
	if c.maxIter < 1 || c.maxIter > 10_000_000 {
		return fmt.Errorf("%w: -n %d out of 1-10000000", errUsage, c.maxIter)
	}
	if c.timeout <= 0 || c.timeout > time.Minute {
		return fmt.Errorf("%w: -timeout %v out of (0, 1m]", errUsage, c.timeout)
	}
	if c.mode == ModeThroughput && (c.bytes < 1 || c.bytes > 64<<30) {
		return fmt.Errorf("%w: -bytes %d out of 1-64GiB", errUsage, c.bytes)
	}
	if c.mode == ModeIdle {
		if c.tunnels < 1 || c.tunnels > 100000 {
			return fmt.Errorf("%w: -tunnels %d out of 1-100000", errUsage, c.tunnels)
		}
		if c.pid <= 0 {
			return fmt.Errorf("%w: -mode idle needs -pid", errUsage)
		}
		if c.settle < 0 || c.settle > time.Minute {
			return fmt.Errorf("%w: -settle %v out of [0, 1m]", errUsage, c.settle)
		}
	}
	if c.mode == ModeHTTP && c.via == ViaTransparent {
		return fmt.Errorf("%w: -mode http takes -via direct or connect", errUsage)
	}
	if c.round < 0 {
		return fmt.Errorf("%w: -round %d", errUsage, c.round)
	}
	if c.pid < 0 {
		return fmt.Errorf("%w: -pid %d", errUsage, c.pid)
	}
	if c.path() != ViaDirect {
		if c.proxy == "" {
			return fmt.Errorf("%w: -mode %s needs -proxy", errUsage, c.mode)
		}
		if err := loopback(c.proxy); err != nil {
			return fmt.Errorf("%w: -proxy: %w", errUsage, err)
		}
	}
	for _, a := range []string{c.originTLS, c.originHTTP} {
		if err := loopback(a); err != nil {
			return fmt.Errorf("%w: origin: %w", errUsage, err)
		}
	}
	if c.name == "" {
		return fmt.Errorf("%w: -name is empty", errUsage)
	}
	return nil
}

// path is how this run reaches the origin.
func (c *config) path() Via {
	switch c.mode {
	case ModeConnect:
		return ViaConnect
	case ModeHTTP:
		if c.via == ViaDirect {
			return ViaDirect
		}
		return ViaConnect
	case ModeTransparent:
		return ViaTransparent
	case ModeDirect:
		return ViaDirect
	}
	return c.via
}

// loopback accepts "IP:port" where IP is a loopback address.
func loopback(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not IP:port: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// result is one run's figures; zero fields are omitted from JSON.
type result struct {
	Label          string     `json:"label,omitempty"`
	Figure         string     `json:"figure,omitempty"`
	Round          int        `json:"round,omitempty"`
	Mode           Mode       `json:"mode"`
	Via            Via        `json:"via,omitempty"`
	Concurrency    int        `json:"concurrency,omitempty"`
	Seconds        float64    `json:"seconds"`
	OK             int64      `json:"ok"`
	Errors         int64      `json:"errors"`
	FirstError     string     `json:"first_error,omitempty"`
	Rate           float64    `json:"rate_per_s,omitempty"`
	Latency        *latencies `json:"latency,omitempty"`
	CPUPerIterUS   float64    `json:"proxy_cpu_us_per_iter,omitempty"`
	CPUPerMBUS     float64    `json:"proxy_cpu_us_per_mb,omitempty"`
	OtherCPUPct    *float64   `json:"other_cpu_pct,omitempty"` // other work's share of all CPUs during the run, %
	Bytes          int64      `json:"bytes_each_way,omitempty"`
	MBps           float64    `json:"mb_per_s,omitempty"`
	Tunnels        int        `json:"tunnels,omitempty"`
	RSSBeforeKB    int64      `json:"rss_before_kb,omitempty"`
	RSSAfterKB     int64      `json:"rss_after_kb,omitempty"`
	RSSPerTunnelKB float64    `json:"rss_per_tunnel_kb,omitempty"`
	Case           string     `json:"case,omitempty"` // gobench: the slowest sub-benchmark
	NsPerOp        float64    `json:"ns_per_op,omitempty"`
	AllocsPerOp    *float64   `json:"allocs_per_op,omitempty"`
	HeapMB         float64    `json:"heap_mb,omitempty"`
}

// human is the one-line summary.
func (r *result) human() string {
	s := string(r.Mode)
	if r.Label != "" {
		s = r.Label + " " + s
	}
	if r.Mode == ModeThroughput || r.Mode == ModeIdle || r.Via == ViaDirect {
		s += " via " + string(r.Via)
	}
	s += fmt.Sprintf(": %.1fs, %d ok, %d errors", r.Seconds, r.OK, r.Errors)
	switch r.Mode {
	case ModeThroughput:
		s += fmt.Sprintf(", %d bytes each way, %.0f MB/s (both ways)", r.Bytes, r.MBps)
		if r.CPUPerMBUS > 0 {
			s += fmt.Sprintf(", proxy CPU %.0f µs/MB", r.CPUPerMBUS)
		}
	case ModeIdle:
		s += fmt.Sprintf(", %d tunnels, RSS %d -> %d KB, %.1f KB per tunnel", r.Tunnels, r.RSSBeforeKB, r.RSSAfterKB, r.RSSPerTunnelKB)
	default:
		s += fmt.Sprintf(", c=%d, %.0f/s", r.Concurrency, r.Rate)
		if r.Latency != nil {
			s += fmt.Sprintf(", p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
		}
		if r.CPUPerIterUS > 0 {
			s += fmt.Sprintf(", proxy CPU %.0f µs/iter", r.CPUPerIterUS)
		}
	}
	if r.OtherCPUPct != nil {
		s += fmt.Sprintf(", other work %.0f%% of the CPUs", *r.OtherCPUPct)
	}
	if r.FirstError != "" {
		s += " (first error: " + r.FirstError + ")"
	}
	return s
}

// execute starts the origin, runs the mode and stops the origin.
func execute(c *config) (*result, error) {
	o, err := startOrigin(c.name, c.originTLS, c.originHTTP)
	if err != nil {
		return nil, err
	}
	defer o.close()
	d := &dialer{cfg: c, roots: o.roots, originTLS: o.tlsLn.Addr().String(), originHTTP: o.httpLn.Addr().String()}
	res := &result{Label: c.label, Figure: c.figure, Round: c.round, Mode: c.mode}
	switch c.mode {
	case ModeThroughput:
		res.Via = c.via
		err = d.throughput(res)
	case ModeIdle:
		res.Via = c.via
		err = d.idle(res)
	case ModeHTTP:
		if c.via == ViaDirect {
			res.Via = ViaDirect
		}
		err = d.load(res)
	default:
		err = d.load(res)
	}
	return res, err
}

// originPort is the port part of a listen address.
func originPort(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	if _, err := strconv.Atoi(p); err != nil {
		return "0"
	}
	return p
}
