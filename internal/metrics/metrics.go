// Package metrics owns egress's Prometheus metrics: their names, help texts,
// label sets and bounded label values (SPEC §7 and §8 "Metric labels").
//
// Everything is registered on a registry the caller injects (no global
// state, no promauto). Every metric is named egress_<thing>_<unit>[_total]
// in base units, and no label value is ever a hostname or an IP address:
// listeners, segments, rule names, actions and reasons come from fixed sets
// or from the active configuration.
//
// Series that can be known in advance are created at 0 by New (fixed label
// sets) and by InitDecisions (the configuration's segments and rules), so that
// rate() and increase() see every counter from start-up.
package metrics

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/dnscache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "egress"

// Listener label values are audit's listener names (audit.ListenerProxy etc.,
// egress.listener in events): one set for events and metrics.

// Action label values.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// Decision reasons that InitDecisions pre-creates. Other reasons (protocol
// checks such as invalid_host) are the rules package's typed constants; their
// string value is passed to Decision as is.
const (
	ReasonDefault = "default"
	ReasonRule    = "rule"
)

// Direction label values of egress_bytes_total.
const (
	DirectionUpload   = "upload"   // client to destination
	DirectionDownload = "download" // destination to client
)

// Result label values of egress_config_reloads_total.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Reason label values of egress_connections_rejected_total.
const (
	RejectMaxConnections = "max_connections"
	RejectPerSource      = "per_source"
	RejectProxyProtocol  = "proxy_protocol"
	// RejectProxyProtocolUntrusted: a PROXY-protocol listener's peer is not
	// in its proxy_protocol_from; closed before its header is read.
	RejectProxyProtocolUntrusted = "proxy_protocol_untrusted"
)

// ListenerAdmin is the listener label of the admin listener's rejected
// connections (over admin.MaxConns or admin.MaxConnsPerSource, reasons
// max_connections and per_source); it is no listener of client traffic.
const ListenerAdmin = "admin"

// Error label values of egress_client_hello_errors_total.
const (
	HelloMalformed = "malformed"
	HelloTooLarge  = "too_large"
	HelloNotTLS    = "not_tls"
	HelloTimeout   = "timeout"
	HelloTruncated = "truncated"
)

// Reason label values of egress_upstream_errors_total.
const (
	UpstreamDNSError               = "dns_error"
	UpstreamDestinationUnavailable = "destination_unavailable"
	UpstreamTimeout                = "timeout"
)

// Reason label values of egress_quic_packets_dropped_total: datagrams the
// QUIC listener dropped without a flow to give them to.
const (
	QUICDropUnknownFlow    = "unknown_flow"    // not a client Initial, and no flow of that address (a short header after a migration, a late packet)
	QUICDropUnknownVersion = "unknown_version" // a long header of a version other than QUIC v1 and v2
	QUICDropMalformed      = "malformed"       // garbage, a bad header, an Initial in a datagram under 1200 bytes
	QUICDropDecryptFailed  = "decrypt_failed"  // an Initial that did not authenticate
	QUICDropQueueFull      = "queue_full"      // the flow's queue was full (the flow could not keep up)
	QUICDropClosedFlow     = "closed_flow"     // the address's flow was just denied or refused (client retransmissions)
	QUICDropDraining       = "draining"        // a new flow during shutdown
	QUICDropFlowTable      = "flow_table_full" // too many flows collecting their hello, or no room to remember a refused one
	QUICDropTooLarge       = "too_large"       // a datagram over 9216 bytes, either way
	// QUICDropSecondConnection: a client Initial of another connection (or
	// another ClientHello) on an existing flow's address and port.
	QUICDropSecondConnection = "second_connection"
)

var (
	quicDropReasons = []string{QUICDropUnknownFlow, QUICDropUnknownVersion, QUICDropMalformed, QUICDropDecryptFailed,
		QUICDropQueueFull, QUICDropClosedFlow, QUICDropDraining, QUICDropFlowTable, QUICDropTooLarge, QUICDropSecondConnection}
	rejectReasons  = []string{RejectMaxConnections, RejectPerSource, RejectProxyProtocol, RejectProxyProtocolUntrusted}
	helloErrors    = []string{HelloMalformed, HelloTooLarge, HelloNotTLS, HelloTimeout, HelloTruncated}
	upstreamErrors = []string{UpstreamDNSError, UpstreamDestinationUnavailable, UpstreamTimeout}
	// helloListeners are the listeners that read a ClientHello.
	helloListeners = []string{audit.ListenerProxy, audit.ListenerTransparentHTTPS, audit.ListenerTransparentQUIC}
)

// Histogram buckets, in seconds. A ClientHello usually completes within one
// round trip; the top bucket matches the default tls.hello_timeout (10s).
var (
	ClientHelloBuckets  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	UpstreamDialBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// RuleLabel names one enforcing rule as it appears in a segment's evaluation
// (a policy's rule appears once per segment using the policy).
type RuleLabel struct{ Segment, Rule, Action string }

// Metrics holds every egress metric. Build it with New.
type Metrics struct {
	Decisions             *prometheus.CounterVec // egress_decisions_total{listener,segment,action,reason,rule}
	ActiveConnections     *prometheus.GaugeVec   // egress_active_connections{listener}
	Bytes                 *prometheus.CounterVec // egress_bytes_total{direction}
	ClientHello           prometheus.Histogram   // egress_client_hello_seconds
	UpstreamDial          prometheus.Histogram   // egress_upstream_dial_seconds
	ConfigReloads         *prometheus.CounterVec // egress_config_reloads_total{result}
	ConfigLastSuccess     prometheus.Gauge       // egress_config_last_reload_success_timestamp_seconds
	ConfigLastSuccessful  prometheus.Gauge       // egress_config_last_reload_successful (1 or 0)
	ConfigInfo            *prometheus.GaugeVec   // egress_config_info{version}
	LogEventsDropped      prometheus.Counter     // egress_log_events_dropped_total
	LogEvents             prometheus.Counter     // egress_log_events_total
	LogQueueLength        prometheus.Gauge       // egress_log_queue_length
	LogQueueCapacity      prometheus.Gauge       // egress_log_queue_capacity
	ConnectionsRejected   *prometheus.CounterVec // egress_connections_rejected_total{listener,reason}
	ClientHelloErrors     *prometheus.CounterVec // egress_client_hello_errors_total{listener,error}
	UpstreamErrors        *prometheus.CounterVec // egress_upstream_errors_total{reason}
	TunnelsClosedOnReload prometheus.Counter     // egress_tunnels_closed_on_reload_total
	ShutdownForced        prometheus.Counter     // egress_shutdown_connections_closed_total
	MemoryTrims           prometheus.Counter     // egress_memory_trims_total
	LimitsMaxConnections  prometheus.Gauge       // egress_limits_max_connections
	LimitsPerSource       prometheus.Gauge       // egress_limits_per_source
	BuildInfo             *prometheus.GaugeVec   // egress_build_info{version,commit,goversion}
	Panics                *prometheus.CounterVec // egress_panics_total{listener}
	UpstreamConnections   *prometheus.GaugeVec   // egress_upstream_connections{listener}
	FeedUpdates           *prometheus.CounterVec // egress_feed_updates_total{feed,result}
	FeedLastSuccess       *prometheus.GaugeVec   // egress_feed_last_success_timestamp_seconds{feed}
	FeedEntries           *prometheus.GaugeVec   // egress_feed_entries{feed}
	Auth                  *prometheus.CounterVec // egress_auth_total{method,result}
	QUICPacketsDropped    *prometheus.CounterVec // egress_quic_packets_dropped_total{reason}
	DNSLookups            *prometheus.CounterVec // egress_dns_lookups_total{result}
	DNSCacheEntries       prometheus.GaugeFunc   // egress_dns_cache_entries
	dnsEntries            atomic.Pointer[func() int]
	dnsByResult           map[string]prometheus.Counter // read-only after New

	// decisionCache maps a label tuple to its counter. It is replaced (never
	// cleared in place) whenever InitDecisions deletes series, so a counter
	// deleted from Decisions cannot linger in the cache.
	decisionCache atomic.Pointer[sync.Map]

	mu          sync.Mutex // serialises InitDecisions and SetConfigVersion
	initialised decisionSets
	feedNames   []string // feeds with series, for SetFeeds
}

type decisionKey struct{ listener, segment, action, reason, rule string }

type decisionSets struct {
	segments map[string]bool
	rules    map[[2]string]bool // {segment, rule}
}

// New builds every metric and registers it on reg. It panics only on a
// programmer error (a name registered twice on reg).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decisions_total",
			Help: "Policy decisions, one per plain-HTTP request, per tunnel and per refused connection. rule is empty when the segment default or a protocol check decided.",
		}, []string{"listener", "segment", "action", "reason", "rule"}),
		ActiveConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "active_connections",
			Help: "Client connections currently open on each listener.",
		}, []string{"listener"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "bytes_total",
			Help: "Bytes relayed between clients and destinations; upload is client to destination, download is destination to client.",
		}, []string{"direction"}),
		ClientHello: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "client_hello_seconds",
			Help:    "Time from the start of the wait for a TLS ClientHello to its complete reception.",
			Buckets: ClientHelloBuckets,
		}),
		UpstreamDial: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "upstream_dial_seconds",
			Help:    "Time to establish the TCP connection to an allowed destination.",
			Buckets: UpstreamDialBuckets,
		}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "config_reloads_total",
			Help: "Configuration loads and reloads by result; a failed reload keeps the running configuration.",
		}, []string{"result"}),
		ConfigLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load or reload.",
		}),
		ConfigLastSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded, 0 if it failed (the running configuration is older than the files).",
		}),
		ConfigInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_info",
			Help: "Always 1; version is the hash of the active configuration.",
		}, []string{"version"}),
		LogEventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "log_events_dropped_total",
			Help: "Decision events dropped because the SIEM queue was full.",
		}),
		LogEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "log_events_total",
			Help: "Decision events queued for the SIEM.",
		}),
		LogQueueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "log_queue_length",
			Help: "Decision events waiting in the SIEM queue.",
		}),
		LogQueueCapacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "log_queue_capacity",
			Help: "Size of the SIEM queue; events beyond it are dropped.",
		}),
		ConnectionsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "connections_rejected_total",
			Help: "Client connections refused before any decision: over limits.max_connections, over limits.per_source, a missing or bad PROXY protocol header, or a PROXY protocol peer not in proxy_protocol_from; listener=\"admin\": over the admin listener's own caps.",
		}, []string{"listener", "reason"}),
		ClientHelloErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "client_hello_errors_total",
			Help: "TLS ClientHellos that could not be read, by error kind.",
		}, []string{"listener", "error"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "upstream_errors_total",
			Help: "Failures to reach an allowed destination, by reason.",
		}, []string{"reason"}),
		TunnelsClosedOnReload: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "tunnels_closed_on_reload_total",
			Help: "Open tunnels closed because a reloaded configuration denies them.",
		}),
		ShutdownForced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "shutdown_connections_closed_total",
			Help: "Connections still open at the end of the shutdown grace period and closed.",
		}),
		MemoryTrims: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "memory_trims_total",
			Help: "Times free heap memory was returned to the operating system after a burst (internal/memtrim).",
		}),
		LimitsMaxConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "limits_max_connections",
			Help: "Configured limits.max_connections: client connections allowed across all listeners.",
		}),
		LimitsPerSource: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "limits_per_source",
			Help: "Configured limits.per_source: concurrent connections allowed from one client address.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help: "Always 1; labels describe the running build.",
		}, []string{"version", "commit", "goversion"}),
		Panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "panics_total",
			Help: "Panics recovered in a connection's goroutine; that connection was closed, the process kept serving. Any value above 0 is a bug to report.",
		}, []string{"listener"}),
		UpstreamConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "upstream_connections",
			Help: "Upstream connections held for plain-HTTP forwarding (in use or idle); each belongs to one client connection.",
		}, []string{"listener"}),
		FeedUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "feed_updates_total",
			Help: "Update attempts of a live list feed, by result (success, not_modified, failure); a failure keeps the last good list.",
		}, []string{"feed", "result"}),
		FeedLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "feed_last_success_timestamp_seconds",
			Help: "When a feed's list was last confirmed current (a success or not_modified fetch); from the cache at start-up, 0 if never.",
		}, []string{"feed"}),
		FeedEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "feed_entries",
			Help: "Distinct names of a feed's list in the configuration in force.",
		}, []string{"feed"}),
		QUICPacketsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "quic_packets_dropped_total",
			Help: "UDP datagrams the QUIC listener dropped without giving them to a flow, by reason (unknown_flow, unknown_version, malformed, decrypt_failed, queue_full, closed_flow, draining, flow_table_full, too_large, second_connection).",
		}, []string{"reason"}),
	}
	m.Auth = newAuth()
	m.DNSLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "dns_lookups_total",
		Help: "DNS lookups of destination names not in upstream.hosts, by result: hit (from the cache), shared (waited for another connection's query), resolved (a server answered, addresses or not found), failed (no server answered usably), hosts (/etc/hosts or a reserved name), system (left to the system resolver).",
	}, []string{"result"})
	m.DNSCacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "dns_cache_entries",
		Help: "Names held by the DNS cache (answers and queries in flight); 0 when upstream.dns_cache_size is 0.",
	}, func() float64 {
		if f := m.dnsEntries.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.decisionCache.Store(new(sync.Map))
	reg.MustRegister(
		m.Decisions, m.ActiveConnections, m.Bytes, m.ClientHello, m.UpstreamDial,
		m.ConfigReloads, m.ConfigLastSuccess, m.ConfigLastSuccessful, m.ConfigInfo,
		m.LogEventsDropped, m.LogEvents, m.LogQueueLength, m.LogQueueCapacity,
		m.ConnectionsRejected, m.ClientHelloErrors, m.UpstreamErrors,
		m.TunnelsClosedOnReload, m.ShutdownForced, m.MemoryTrims,
		m.LimitsMaxConnections, m.LimitsPerSource, m.BuildInfo,
		m.Panics, m.UpstreamConnections,
		m.FeedUpdates, m.FeedLastSuccess, m.FeedEntries, m.Auth,
		m.QUICPacketsDropped, m.DNSLookups, m.DNSCacheEntries,
	)
	m.initFixed()
	return m
}

// initFixed creates at 0 every series whose labels come from fixed sets.
func (m *Metrics) initFixed() {
	for _, l := range audit.Listeners {
		m.ActiveConnections.WithLabelValues(l)
		m.Panics.WithLabelValues(l)
		m.UpstreamConnections.WithLabelValues(l)
		for _, r := range rejectReasons {
			m.ConnectionsRejected.WithLabelValues(l, r)
		}
	}
	m.ConnectionsRejected.WithLabelValues(ListenerAdmin, RejectMaxConnections)
	m.ConnectionsRejected.WithLabelValues(ListenerAdmin, RejectPerSource)
	for _, l := range helloListeners {
		for _, e := range helloErrors {
			m.ClientHelloErrors.WithLabelValues(l, e)
		}
	}
	for _, d := range []string{DirectionUpload, DirectionDownload} {
		m.Bytes.WithLabelValues(d)
	}
	for _, r := range []string{ResultSuccess, ResultFailure} {
		m.ConfigReloads.WithLabelValues(r)
	}
	for _, r := range upstreamErrors {
		m.UpstreamErrors.WithLabelValues(r)
	}
	for _, r := range quicDropReasons {
		m.QUICPacketsDropped.WithLabelValues(r)
	}
	m.dnsByResult = map[string]prometheus.Counter{}
	for _, r := range dnscache.Results {
		m.dnsByResult[r] = m.DNSLookups.WithLabelValues(r)
	}
}

// DNSLookup counts one DNS lookup (a dnscache result). It runs on the
// event loops for every cache hit: the counters are looked up once.
func (m *Metrics) DNSLookup(result string) {
	if c, ok := m.dnsByResult[result]; ok {
		c.Inc()
		return
	}
	m.DNSLookups.WithLabelValues(result).Inc()
}

// SetDNSEntries makes egress_dns_cache_entries read entries.
func (m *Metrics) SetDNSEntries(entries func() int) { m.dnsEntries.Store(&entries) }

// NewRegistry returns a registry with the Go runtime and process collectors
// registered, ready for New and for the admin /metrics handler.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// InitDecisions pre-creates at 0 the decision series the configuration can
// produce: for every listener and segment the segment-default allow and deny
// series, and for every rule its series (reason "rule", the rule's action).
// Pass enforcing rules only: a monitor rule never decides.
//
// Call it at start-up and after each successful reload with the new sets.
// Series of segments and rules that the previous call named and this one does
// not are deleted, so renamed rules do not accumulate across reloads.
func (m *Metrics) InitDecisions(listeners []string, segments []string, rules []RuleLabel) {
	m.mu.Lock()
	defer m.mu.Unlock()

	next := decisionSets{segments: make(map[string]bool, len(segments)), rules: make(map[[2]string]bool, len(rules))}
	for _, s := range segments {
		next.segments[s] = true
	}
	for _, r := range rules {
		next.rules[[2]string{r.Segment, r.Rule}] = true
	}
	deleted := 0
	for s := range m.initialised.segments {
		if !next.segments[s] {
			deleted += m.Decisions.DeletePartialMatch(prometheus.Labels{"segment": s})
		}
	}
	for sr := range m.initialised.rules {
		if !next.rules[sr] {
			deleted += m.Decisions.DeletePartialMatch(prometheus.Labels{"segment": sr[0], "rule": sr[1]})
		}
	}
	if deleted > 0 {
		// Order matters: delete first, then publish a new cache, so that no
		// cache reachable after this point holds a deleted counter.
		m.decisionCache.Store(new(sync.Map))
	}
	m.initialised = next

	for _, l := range listeners {
		for _, s := range segments {
			m.Decisions.WithLabelValues(l, s, ActionAllow, ReasonDefault, "")
			m.Decisions.WithLabelValues(l, s, ActionDeny, ReasonDefault, "")
		}
		for _, r := range rules {
			m.Decisions.WithLabelValues(l, r.Segment, r.Action, ReasonRule, r.Rule)
		}
	}
}

// Decision counts one decision. It is on every connection's path: the
// counter for a label tuple is looked up once and then cached.
func (m *Metrics) Decision(listener, segment, action, reason, rule string) {
	cache := m.decisionCache.Load()
	k := decisionKey{listener, segment, action, reason, rule}
	if c, ok := cache.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.Decisions.WithLabelValues(listener, segment, action, reason, rule)
	cache.Store(k, c)
	c.Inc()
}

// ConfigLoaded records a configuration load or reload. On success it also
// sets the last-success timestamp and the active version; call it for the
// initial load too, so that the timestamp is set from start-up.
func (m *Metrics) ConfigLoaded(ok bool, version string, at time.Time) {
	if !ok {
		m.ConfigReloads.WithLabelValues(ResultFailure).Inc()
		m.ConfigLastSuccessful.Set(0)
		return
	}
	m.ConfigReloads.WithLabelValues(ResultSuccess).Inc()
	m.ConfigLastSuccessful.Set(1)
	m.ConfigLastSuccess.Set(float64(at.UnixNano()) / 1e9)
	m.SetConfigVersion(version)
}

// SetConfigVersion makes version the only egress_config_info series.
func (m *Metrics) SetConfigVersion(version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ConfigInfo.Reset()
	m.ConfigInfo.WithLabelValues(version).Set(1)
}

// SetBuildInfo sets egress_build_info for this build (Go version from the
// runtime).
func (m *Metrics) SetBuildInfo(version, commit string) {
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// SetLimits publishes the configured connection limits (0 means unlimited).
func (m *Metrics) SetLimits(maxConnections, perSource int) {
	m.LimitsMaxConnections.Set(float64(maxConnections))
	m.LimitsPerSource.Set(float64(perSource))
}

// FeedResults are the values of egress_feed_updates_total's result label.
var FeedResults = []string{"success", "not_modified", "failure"}

// FeedState is a feed of the configuration in force, for SetFeeds.
type FeedState struct {
	Name        string
	Entries     int
	LastSuccess time.Time // zero: never
}

// SetFeeds makes feeds the feed series: every result of each at 0 (kept
// across reloads), entries and last success set, and the series of feeds no
// longer configured deleted. The label set is bounded by the configuration.
func (m *Metrics) SetFeeds(feeds []FeedState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for _, f := range feeds {
		keep[f.Name] = true
		for _, r := range FeedResults {
			m.FeedUpdates.WithLabelValues(f.Name, r)
		}
		m.FeedEntries.WithLabelValues(f.Name).Set(float64(f.Entries))
		g := m.FeedLastSuccess.WithLabelValues(f.Name)
		if !f.LastSuccess.IsZero() {
			g.Set(float64(f.LastSuccess.UnixNano()) / 1e9)
		}
	}
	for _, name := range m.feedNames {
		if !keep[name] {
			m.FeedUpdates.DeletePartialMatch(prometheus.Labels{"feed": name})
			m.FeedEntries.DeleteLabelValues(name)
			m.FeedLastSuccess.DeleteLabelValues(name)
		}
	}
	m.feedNames = m.feedNames[:0]
	for name := range keep {
		m.feedNames = append(m.feedNames, name)
	}
}

// FeedUpdated counts one update attempt of feed; a success or not_modified
// also sets its last-success time.
func (m *Metrics) FeedUpdated(feed, result string, at time.Time) {
	m.FeedUpdates.WithLabelValues(feed, result).Inc()
	if result != "failure" {
		m.FeedLastSuccess.WithLabelValues(feed).Set(float64(at.UnixNano()) / 1e9)
	}
}
