// Package service owns the life of the process: it loads the configuration,
// opens the listeners (explicit proxy, transparent, admin), builds the SIEM
// logger and the metrics, reloads on SIGHUP or on a change of any file the
// configuration read, and shuts down gracefully on SIGTERM/SIGINT.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/admin"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/httpproxy"
	"github.com/egress-proxy/egress/internal/memtrim"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/tlsproxy"
	"github.com/egress-proxy/egress/internal/transparent"
	"github.com/egress-proxy/egress/internal/tunnel"
	"github.com/hashicorp/hcl/v2"
)

// Options configure Run.
type Options struct {
	// Load loads the configuration (the -config path, or the embedded default).
	Load    func() (*rules.Config, hcl.Diagnostics)
	Version string
	Commit  string
	Log     *slog.Logger // process log (stderr)
	// Signals, if set, replaces the process signals (tests).
	Signals <-chan os.Signal
}

// Run serves until ctx ends or SIGTERM/SIGINT, then drains. It returns an
// error if the configuration or a listener cannot be set up.
func Run(ctx context.Context, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg, diags := o.Load()
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			log.Warn("config: " + rules.FormatDiagnostic(d))
		}
	}
	if diags.HasErrors() {
		return rules.DiagnosticsError(diags)
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg)
	m.SetBuildInfo(o.Version, o.Commit)

	sink := &switchSink{m: m}
	lg, err := newLogger(cfg, o.Version, m, log)
	if err != nil {
		return err
	}
	sink.set(lg, cfg.Log)
	defer func() { sink.close() }()

	store := active.NewStoreObserved(cfg, m.DNSLookup)
	m.SetDNSEntries(func() int {
		if c := store.DNS(); c != nil {
			return c.Len()
		}
		return 0
	})
	logAuthErrors(log, store.Load())
	initMetrics(m, cfg)
	tracker := conntrack.New(store.Config, m, log)
	rec := outcome.NewRecorder(sink, m)
	m.ConfigLoaded(true, cfg.Version, time.Now())

	s := &server{o: o, log: log, active: store, track: tracker, record: rec, metrics: m, sink: sink, path: cfg.Source,
		tls: &tlsproxy.Proxy{Active: store, Record: rec, Metrics: m, Panicked: tracker.Panicked}}
	s.ready.Store(false)
	// From the start, not only from the first reload: before it, a
	// fallback to the active config would show a reloading config's
	// version while the tunnels it denies are still being closed.
	initial := cfg.Version
	s.applied.Store(&initial)
	if err := s.listen(cfg); err != nil {
		s.closeListeners()
		if s.quicConn != nil {
			s.quicConn.Close()
		}
		return err
	}
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	if s.adminLn != nil {
		h := admin.Handler(admin.Options{Gatherer: reg, State: s, PAC: s.pac, Pprof: cfg.Admin.Pprof, Log: log})
		ln := admin.LimitListener(s.adminLn, func(reason string) {
			s.metrics.ConnectionsRejected.WithLabelValues(metrics.ListenerAdmin, reason).Inc()
		})
		go admin.Serve(adminCtx, ln, h)
	}
	s.serve()
	trimCtx, stopTrim := context.WithCancel(context.Background())
	defer stopTrim()
	go (&memtrim.Trimmer{Trimmed: func(took time.Duration) {
		m.MemoryTrims.Inc()
		log.Debug("returned free memory to the OS after a burst", "took", took)
	}}).Run(trimCtx)
	s.feeds = newFeedLoops(store, m, log)
	s.feeds.sync(cfg)
	defer s.feeds.stop()
	s.ready.Store(true)
	log.Info("egress serving", "version", o.Version, "config", cfg.Source, "config_version", cfg.Version,
		"proxy", addrOf(s.proxyLn), "proxy_tls", addrOf(s.proxyTLSLn), "transparent_https", addrOf(s.tlsLn), "transparent_http", addrOf(s.httpLn),
		"transparent_quic", udpAddrOf(s.quicConn), "admin", addrOf(s.adminLn))

	// Events on stdout go to a reader (a shipper, the container runtime)
	// that may go away: a write to a broken pipe on fd 1 or 2 would end the
	// process by SIGPIPE. Ignored, the write fails with EPIPE, and the
	// events are dropped and counted like any other output's failure.
	signal.Ignore(syscall.SIGPIPE)
	sigs := o.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(ch)
		sigs = ch
	}
	return s.run(ctx, cfg, sigs)
}

// run reloads on SIGHUP, on a feed's new copy and on a change of the
// config's files until ctx ends or a stop signal, then shuts down.
//
// A change the poll sees is loaded once the files have kept still for
// settleDelay, and a load whose files changed while it read them is not
// applied but tried again the same way: a file written in place (an editor,
// `git checkout`, a list copied in pieces) is never loaded half-written,
// which for a list of names to deny would be a policy with names missing.
func (s *server) run(ctx context.Context, cfg *rules.Config, sigs <-chan os.Signal) error {
	w := newWatcher(cfg)
	interval := cfg.Limits.ReloadInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var settle <-chan time.Time // armed while a load waits for the files to keep still
	var why string              // that load's trigger
	var still stillness         // how long it waits
	wait := func(trigger string) {
		if waited, warn := still.wait(time.Now()); warn {
			s.log.Warn("configuration files keep changing; the change is loaded once they keep still for "+settleDelay(interval).String(),
				"trigger", trigger, "waiting", waited.Round(time.Second).String())
		}
		why, settle = trigger, time.After(settleDelay(interval))
	}
	load := func(trigger string) {
		settle, still = nil, stillness{}
		c, torn := s.reload(trigger, w)
		switch {
		case torn:
			w.quiet() // the look the settle compares with
			wait(trigger)
		case c != nil:
			w = newWatcher(c)
			interval = c.Limits.ReloadInterval
			tick.Reset(interval)
		}
	}
	// request loads now if the files kept still since the last look and no
	// change is waiting to settle, else once they keep still: a SIGHUP or a
	// feed's new copy that comes while a file is being written must not
	// load it half-written either.
	request := func(trigger string) {
		if settle == nil && w.quiet() {
			load(trigger)
			return
		}
		wait(trigger)
	}
	for {
		select {
		case <-ctx.Done():
			return s.shutdown()
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				s.log.Info("signal: shutting down", "signal", sig.String())
				return s.shutdown()
			}
			s.log.Info("SIGHUP: reloading configuration and reopening the event log")
			s.sink.reopen()
			request("sighup")
		case <-s.feeds.changed:
			// A feed wrote a new last good copy (the cache file is one of the
			// config's files, written whole by a rename): reload
			// unconditionally.
			request("feed update")
		case <-tick.C:
			if settle == nil && w.changed() {
				wait("file change")
			}
		case <-settle:
			if !w.quiet() {
				wait(why) // still being written
				continue
			}
			load(why)
		}
	}
}

// stillWarnAfter: a change that waited this long for the files to keep
// still is logged (once), so that a file rewritten without pause is seen.
const stillWarnAfter = 10 * time.Second

// stillness follows one change that waits for the files to keep still.
type stillness struct {
	since  time.Time // the first wait; zero: none yet
	warned bool
}

// wait notes a wait at now. It returns how long the change has waited, and
// warn true the first time that is longer than stillWarnAfter.
func (s *stillness) wait(now time.Time) (waited time.Duration, warn bool) {
	if s.since.IsZero() {
		s.since = now
	}
	waited = now.Sub(s.since)
	if !s.warned && waited > stillWarnAfter {
		s.warned = true
		return waited, true
	}
	return waited, false
}

// settleDelay is how long the files must keep still before a change is
// loaded: 250ms, or the poll interval if that is shorter.
func settleDelay(interval time.Duration) time.Duration {
	return min(interval, 250*time.Millisecond)
}

type server struct {
	o       Options
	log     *slog.Logger
	active  *active.Store      // the configuration in force
	track   *conntrack.Tracker // every client connection, from accept to close
	record  *outcome.Recorder  // one metric and one event per decision
	tls     *tlsproxy.Proxy    // TLS flows: CONNECT tunnels, transparent TLS
	metrics *metrics.Metrics
	sink    *switchSink
	feeds   *feedLoops // one refresh loop per live list feed
	path    string

	proxyLn, tlsLn, httpLn, adminLn net.Listener
	proxySrv                        *httpproxy.Server
	// proxyTLSLn and proxyTLSSrv: the TLS proxy listener (proxy.tls_listen).
	proxyTLSLn  net.Listener
	proxyTLSSrv *httpproxy.Server
	transSrv    *transparent.Server
	quicConn    *net.UDPConn // transparent.quic_listen; closed after the drain
	quicSrv     *transparent.QUIC
	wg          sync.WaitGroup

	ready atomic.Bool
	// applied is the version of the config whose reload is complete (its
	// denied tunnels closed): what /readyz shows, so that a client that
	// waits for the new version there finds it in force. Set from the
	// start (Run), never nil.
	applied  atomic.Pointer[string]
	stopping atomic.Bool
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return ln.Addr().String()
}

func udpAddrOf(c *net.UDPConn) string {
	if c == nil {
		return "off"
	}
	return c.LocalAddr().String()
}

// clientListen opens a client-facing listener, one whose connections carry
// tunnels (not admin). TCP keepalive is off: dead clients are reaped by
// limits.idle_timeout, and every accepted connection saves four setsockopt
// calls. The tunnel's SO_RCVBUF is set on the listener, which accepted
// sockets inherit (tunnel.ListenControl): one call per tunnel fewer.
func clientListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: tunnel.ListenControl}
	return lc.Listen(context.Background(), "tcp", addr)
}

func (s *server) listen(cfg *rules.Config) error {
	var err error
	if s.proxyLn, err = clientListen(cfg.Proxy.Listen); err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	if cfg.Proxy.TLS != nil {
		if s.proxyTLSLn, err = clientListen(cfg.Proxy.TLS.Listen); err != nil {
			return fmt.Errorf("proxy tls listener: %w", err)
		}
	}
	if cfg.Transparent.Enabled && cfg.Transparent.HTTPSListen != "" {
		if s.tlsLn, err = clientListen(cfg.Transparent.HTTPSListen); err != nil {
			return fmt.Errorf("transparent https listener: %w", err)
		}
	}
	if cfg.Transparent.Enabled && cfg.Transparent.HTTPListen != "" {
		if s.httpLn, err = clientListen(cfg.Transparent.HTTPListen); err != nil {
			return fmt.Errorf("transparent http listener: %w", err)
		}
	}
	if cfg.Transparent.Enabled && cfg.Transparent.QUICListen != "" {
		addr, rerr := net.ResolveUDPAddr("udp", cfg.Transparent.QUICListen)
		if rerr == nil {
			s.quicConn, rerr = net.ListenUDP("udp", addr)
		}
		if rerr != nil {
			return fmt.Errorf("transparent quic listener: %w", rerr)
		}
		// Every client datagram of every flow arrives here: room for a
		// burst while the read loop hands them out (the kernel caps it
		// at net.core.rmem_max).
		s.quicConn.SetReadBuffer(4 << 20)
	}
	if cfg.Admin.Listen != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	return nil
}

func (s *server) serve() {
	cfg := s.active.Config()
	s.proxySrv = &httpproxy.Server{Mode: httpproxy.Explicit, ProxyProtocol: cfg.Proxy.ProxyProtocol,
		Active: s.active, Track: s.track, Record: s.record, Metrics: s.metrics, TLS: s.tls}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.proxySrv.Serve(s.proxyLn) }()
	if s.proxyTLSLn != nil {
		// No PROXY protocol here: the TLS handshake is the first thing read.
		s.proxyTLSSrv = &httpproxy.Server{Mode: httpproxy.Explicit, ProxyTLS: true,
			Active: s.active, Track: s.track, Record: s.record, Metrics: s.metrics, TLS: s.tls}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.proxyTLSSrv.Serve(s.proxyTLSLn) }()
	}
	if s.tlsLn != nil || s.httpLn != nil {
		s.transSrv = &transparent.Server{Active: s.active, Track: s.track, Record: s.record, Metrics: s.metrics, TLS: s.tls,
			ProxyProtocol: cfg.Transparent.ProxyProtocol,
			HTTPSPort:     cfg.Transparent.HTTPSPort, HTTPPort: cfg.Transparent.HTTPPort}
		if s.tlsLn != nil {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.transSrv.ServeTLS(s.tlsLn) }()
		}
		if s.httpLn != nil {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.transSrv.ServeHTTP(s.httpLn) }()
		}
	}
	if s.quicConn != nil {
		s.quicSrv = &transparent.QUIC{Port: cfg.Transparent.QUICPort, Active: s.active, Track: s.track, Record: s.record, Metrics: s.metrics}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.quicSrv.ServeQUIC(s.quicConn) }()
	}
}

func (s *server) closeListeners() {
	for _, ln := range []net.Listener{s.proxyLn, s.proxyTLSLn, s.tlsLn, s.httpLn} {
		if ln != nil {
			ln.Close()
		}
	}
	// The explicit proxy's and the transparent HTTPS sockets may be
	// accepted from on the event loops, which took them from their
	// listeners.
	if s.proxySrv != nil {
		s.proxySrv.CloseAccept()
	}
	if s.transSrv != nil {
		s.transSrv.CloseTLS()
	}
}

// Ready implements admin.State.
func (s *server) Ready() (bool, string, string) {
	v := *s.applied.Load()
	switch {
	case s.stopping.Load():
		return false, v, "shutting down"
	case !s.ready.Load():
		return false, v, "starting"
	}
	return true, v, ""
}

func (s *server) pac() admin.PACConfig {
	cfg := s.active.Config()
	port := 3128
	if s.proxyLn != nil {
		port = s.proxyLn.Addr().(*net.TCPAddr).Port
	} else if _, p, err := net.SplitHostPort(cfg.Proxy.Listen); err == nil {
		port, _ = strconv.Atoi(p)
	}
	return admin.PACConfig{ProxyAddr: cfg.Admin.PACProxy, ProxyPort: port,
		DirectSuffixes: cfg.Admin.DirectDomains, DirectCIDRs: cfg.Admin.DirectNetworks}
}

// reload loads the configuration again; a config with errors keeps the
// running one. It returns the new config, or nil.
// reload loads the configuration and applies it; nil if it failed (w then
// records the content, so the poll does not retry it). torn: the files
// changed while they were read, so what was read may be half of an edit;
// nothing was applied or counted, and the caller loads again once the files
// keep still.
func (s *server) reload(why string, w *watcher) (c *rules.Config, torn bool) {
	before := w.fingerprint()
	cfg, diags := s.o.Load()
	if w.fingerprint() != before {
		s.log.Warn("configuration files changed while they were read; loading them again once they keep still", "trigger", why)
		return nil, true
	}
	if diags.HasErrors() {
		w.failed()
		s.metrics.ConfigLoaded(false, "", time.Now())
		s.log.Error("reload failed; the running configuration stays active", "trigger", why,
			"config_version", s.active.Config().Version, "errors", rules.DiagnosticsError(diags).Error())
		return nil, false
	}
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			s.log.Warn("config: " + rules.FormatDiagnostic(d))
		}
	}
	old := s.active.Config()
	s.warnStatic(old, cfg)
	if cfg.Log != old.Log {
		if lg, err := newLogger(cfg, s.o.Version, s.metrics, s.log); err != nil {
			s.log.Error("new log output unusable; keeping the old one", "err", err)
		} else {
			s.sink.set(lg, cfg.Log)
		}
	}
	logAuthErrors(s.log, s.active.Publish(cfg))
	initMetrics(s.metrics, cfg)
	s.feeds.sync(cfg)
	closed := s.track.Reloaded(cfg)
	s.metrics.ConfigLoaded(true, cfg.Version, time.Now())
	v := cfg.Version
	s.applied.Store(&v)
	s.log.Info("configuration reloaded", "trigger", why, "config_version", cfg.Version, "previous", old.Version, "tunnels_closed", closed)
	return cfg, false
}

// warnStatic says which changed settings need a restart.
func (s *server) warnStatic(old, cfg *rules.Config) {
	if old.Proxy.Listen != cfg.Proxy.Listen || old.Proxy.ProxyProtocol != cfg.Proxy.ProxyProtocol ||
		tlsListen(old) != tlsListen(cfg) || old.Transparent != cfg.Transparent || old.Admin.Listen != cfg.Admin.Listen {
		s.log.Warn("listener addresses and proxy_protocol changed: they take effect at the next restart")
	}
}

// shutdown: not ready at once, listeners closed, idle keep-alive connections
// closed, open requests and tunnels given limits.shutdown_grace, the rest
// closed and counted.
func (s *server) shutdown() error {
	s.stopping.Store(true)
	s.feeds.stop()
	grace := s.active.Config().Limits.ShutdownGrace
	s.closeListeners()
	s.track.CloseIdle()
	deadline := time.Now().Add(grace)
	for s.track.Connections() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		s.track.CloseIdle()
	}
	if n := s.track.CloseAll(); n > 0 {
		s.log.Warn("shutdown grace period over: closed open connections", "count", n, "grace", grace.String())
	}
	if s.quicSrv != nil {
		// Open through the drain: a QUIC flow's client datagrams arrive on it.
		s.quicSrv.Close()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		if s.proxySrv != nil {
			s.proxySrv.Wait()
		}
		if s.proxyTLSSrv != nil {
			s.proxyTLSSrv.Wait()
		}
		if s.transSrv != nil {
			s.transSrv.Wait()
		}
		if s.quicSrv != nil {
			s.quicSrv.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("connection handlers still running at exit")
	}
	s.log.Info("egress stopped")
	return nil
}

var errNoLogger = errors.New("no event logger")

func newLogger(cfg *rules.Config, version string, m *metrics.Metrics, log *slog.Logger) (*audit.Logger, error) {
	lg, err := audit.New(audit.Options{
		Format: cfg.Log.Format, Output: cfg.Log.Output, Version: version, QueueSize: cfg.Log.QueueSize,
		OnDrop: m.LogEventsDropped.Inc, Log: log, LegacyFields: cfg.Log.LegacyFields,
		TLSCAFile: cfg.Log.TLSCAFile, TLSServerName: cfg.Log.TLSServerName,
		TLSCertFile: cfg.Log.TLSCertFile, TLSKeyFile: cfg.Log.TLSKeyFile,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: log output %q: %v", errNoLogger, cfg.Log.Output, err)
	}
	return lg, nil
}

// switchSink is the event sink the engine writes to; a reload that changes
// the log block swaps the logger behind it.
type switchSink struct {
	cur atomic.Pointer[audit.Logger]
	mu  sync.Mutex
	m   *metrics.Metrics
}

func (s *switchSink) Log(e *audit.Event) {
	if l := s.cur.Load(); l != nil {
		l.Log(e)
		s.m.LogEvents.Inc()
		s.m.LogQueueLength.Set(float64(l.Queued()))
	}
}

func (s *switchSink) set(l *audit.Logger, _ rules.LogSettings) {
	s.mu.Lock()
	old := s.cur.Swap(l)
	s.mu.Unlock()
	s.m.LogQueueCapacity.Set(float64(l.Capacity()))
	if old != nil {
		go old.Close()
	}
}

func (s *switchSink) reopen() {
	if l := s.cur.Load(); l != nil {
		l.Reopen()
	}
}

func (s *switchSink) close() {
	if l := s.cur.Swap(nil); l != nil {
		l.Close()
	}
}

// initMetrics creates the decision series of cfg's segments and rules at 0
// and publishes its version and limits.
func initMetrics(m *metrics.Metrics, cfg *rules.Config) {
	var segs []string
	var rl []metrics.RuleLabel
	for _, seg := range cfg.Policy.Segments() {
		segs = append(segs, seg.Name)
		for _, r := range seg.Rules() {
			if !r.Monitor {
				rl = append(rl, metrics.RuleLabel{Segment: seg.Name, Rule: r.Name, Action: r.Action.String()})
			}
		}
	}
	m.InitDecisions(audit.Listeners, segs, rl)
	m.SetConfigVersion(cfg.Version)
	m.SetLimits(cfg.Limits.MaxConnections, cfg.Limits.PerSource)
}

// tlsListen is the TLS proxy listener's address, "" when off.
func tlsListen(cfg *rules.Config) string {
	if cfg.Proxy.TLS == nil {
		return ""
	}
	return cfg.Proxy.TLS.Listen
}

// logAuthErrors reports identity sources that could not be built: requests
// that need them fail closed until a reload fixes them.
func logAuthErrors(log *slog.Logger, st *active.State) {
	for _, err := range st.AuthErrors {
		log.Error("identity source unusable: authentications that need it fail closed", "err", err.Error())
	}
}
