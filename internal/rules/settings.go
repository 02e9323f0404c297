package rules

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Defaults of every optional setting (SPEC §2 and §8 "Defaults").
const (
	DefaultProxyListen     = "127.0.0.1:3128"
	DefaultAdminListen     = "127.0.0.1:9090"
	DefaultHelloTimeout    = 10 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultDNSCacheSize    = 10000
	DefaultDNSMaxTTL       = 5 * time.Minute
	DefaultDNSServeStale   = 12 * time.Hour
	MaxDNSServeStale       = 7 * 24 * time.Hour
	MaxDNSCacheSize        = 1 << 22
	DefaultMaxConnections  = 20000
	DefaultPerSource       = 512
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultShutdownGrace   = 30 * time.Second
	DefaultReloadInterval  = 5 * time.Second
	DefaultHeaderTimeout   = 30 * time.Second
	DefaultMaxHeaderBytes  = 64 << 10
	DefaultLogQueue        = 65536
	DefaultHTTPSPort       = 443
	DefaultHTTPPort        = 80
	DefaultQUICPort        = 443
	DefaultTransparentTLS  = "0.0.0.0:8443"
	DefaultTransparentHTTP = "0.0.0.0:8080"
)

// ProxySettings is the explicit proxy listener.
type ProxySettings struct {
	Listen        string
	ProxyProtocol bool
	// TLS is the TLS proxy listener (tls_listen); nil when off.
	TLS *ProxyTLS
}

// TransparentSettings is the optional transparent listener pair. Enabled is
// false when the config has no transparent block; an empty listen address
// disables that listener.
type TransparentSettings struct {
	Enabled       bool
	HTTPSListen   string
	HTTPListen    string
	HTTPSPort     uint16
	HTTPPort      uint16
	QUICListen    string // UDP, QUIC flows (SPEC §10.1); empty (the default): off
	QUICPort      uint16 // the UDP port dialed for allowed QUIC flows
	ProxyProtocol bool
}

// ProxyProtocolPeers are the peers whose PROXY protocol headers a listener
// believes (proxy_protocol_from of the proxy and transparent blocks, SPEC
// §10.4): the load balancers in front. A connection from any other peer is
// refused before its header is read, so it can never choose a segment. Unlike
// the listener settings they apply on reload, so a balancer removed from the
// list is distrusted at once.
type ProxyProtocolPeers struct {
	Proxy       []netip.Prefix // the explicit proxy listener
	Transparent []netip.Prefix // both transparent listeners
}

// Trusts reports whether peer (a real TCP peer address) is in peers. An
// IPv4-mapped IPv6 peer is compared as IPv4.
func Trusts(peers []netip.Prefix, peer netip.Addr) bool {
	peer = peer.Unmap()
	for _, p := range peers {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// AdminSettings is the admin listener and the PAC file it serves.
type AdminSettings struct {
	Listen         string
	PACProxy       string   // host:port clients should use, or https://host:port (PAC "HTTPS"); "" = derive from the request
	DirectDomains  []string // PAC: DIRECT for these suffixes
	DirectNetworks []string // PAC: DIRECT for these IPv4 CIDRs
	Pprof          bool
}

// TLSSettings are the protocol checks on tunnels (SPEC §2 tls block).
type TLSSettings struct {
	HelloTimeout time.Duration
	SNIMismatch  Action
	MissingSNI   Action
	NonTLS       Action
	ECH          Action
}

// UpstreamSettings govern resolution and dialing.
type UpstreamSettings struct {
	DialTimeout  time.Duration
	Hosts        map[string]netip.Addr // normalised name → address
	AllowPrivate []netip.Prefix
	// DNSServers are asked for names not in Hosts; empty: the nameservers
	// of /etc/resolv.conf.
	DNSServers []netip.AddrPort
	// DNSCacheSize names are kept for their TTL, capped at DNSMaxTTL; 0:
	// no cache, every lookup through Go's resolver.
	DNSCacheSize int
	DNSMaxTTL    time.Duration
	// DNSServeStale: for this long after its expiry, an answer is still
	// given when the servers fail (RFC 8767); 0: never.
	DNSServeStale time.Duration
}

// LogSettings choose the SIEM event format and sink.
type LogSettings struct {
	Format    string
	Output    string
	QueueSize int
	// LegacyFields also writes the egress 1.x names of renamed event fields.
	LegacyFields bool
	// syslog+tls: files resolved against the folder of the file holding the
	// log block (read and checked at load), the name to verify, and a digest
	// of the files' content so that a reload notices a rotated certificate.
	TLSCAFile     string
	TLSServerName string
	TLSCertFile   string
	TLSKeyFile    string
	TLSDigest     string
}

// LimitsSettings bound connections and time.
type LimitsSettings struct {
	MaxConnections  int
	PerSource       int
	IdleTimeout     time.Duration
	ShutdownGrace   time.Duration
	ReloadInterval  time.Duration
	EnforceOnReload bool
	HeaderTimeout   time.Duration
	MaxHeaderBytes  int
}

func defaultSettings() (ProxySettings, TransparentSettings, AdminSettings, TLSSettings, UpstreamSettings, LogSettings, LimitsSettings) {
	return ProxySettings{Listen: DefaultProxyListen},
		TransparentSettings{HTTPSPort: DefaultHTTPSPort, HTTPPort: DefaultHTTPPort, QUICPort: DefaultQUICPort},
		AdminSettings{Listen: DefaultAdminListen},
		TLSSettings{HelloTimeout: DefaultHelloTimeout, SNIMismatch: Deny, MissingSNI: Allow, NonTLS: Deny, ECH: Allow},
		UpstreamSettings{DialTimeout: DefaultDialTimeout, Hosts: map[string]netip.Addr{},
			DNSCacheSize: DefaultDNSCacheSize, DNSMaxTTL: DefaultDNSMaxTTL, DNSServeStale: DefaultDNSServeStale},
		LogSettings{Format: "ecs", Output: "stdout", QueueSize: DefaultLogQueue},
		LimitsSettings{MaxConnections: DefaultMaxConnections, PerSource: DefaultPerSource,
			IdleTimeout: DefaultIdleTimeout, ShutdownGrace: DefaultShutdownGrace,
			ReloadInterval: DefaultReloadInterval, EnforceOnReload: true,
			HeaderTimeout: DefaultHeaderTimeout, MaxHeaderBytes: DefaultMaxHeaderBytes}
}

// singleton reports a second block of a kind that may appear once (across all
// files of a directory).
func singleton[T any](kind string, blocks []T, rng func(T) hcl.Range) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i := 1; i < len(blocks); i++ {
		r := rng(blocks[i])
		first := rng(blocks[0])
		diags = append(diags, errorAt(&r, fmt.Sprintf("Duplicate %s block", kind),
			"Only one %s block is allowed; the first is at %s:%d:%d. Merge them.", kind, first.Filename, first.Start.Line, first.Start.Column))
	}
	return diags
}

type settingsChecker struct{ diags hcl.Diagnostics }

func (c *settingsChecker) listen(s *string, body hcl.Body, name string, def hcl.Range, out *string) {
	if s == nil {
		return
	}
	if *s == "" {
		*out = ""
		return
	}
	host, port, err := net.SplitHostPort(*s)
	if err == nil {
		if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
			err = perr
		} else if host != "" {
			if _, aerr := netip.ParseAddr(host); aerr != nil && host != "localhost" {
				err = fmt.Errorf("host must be an IP address")
			}
		}
	}
	if err != nil {
		c.diags = append(c.diags, errorAt(attrRange(body, name, def), "Invalid listen address",
			"%q is not an address to listen on; write \"IP:port\", e.g. \"0.0.0.0:3128\" or \"[::]:3128\".", *s))
		return
	}
	*out = *s
}

func (c *settingsChecker) duration(s *string, body hcl.Body, name string, def hcl.Range, out *time.Duration) {
	if s == nil {
		return
	}
	d, err := time.ParseDuration(*s)
	if err != nil || d <= 0 {
		c.diags = append(c.diags, errorAt(attrRange(body, name, def), "Invalid duration",
			"%s = %q: write a positive Go duration such as \"10s\", \"500ms\" or \"5m\".", name, *s))
		return
	}
	*out = d
}

func (c *settingsChecker) action(s *string, body hcl.Body, name string, def hcl.Range, out *Action) {
	if s == nil {
		return
	}
	a, ok := parseAction(*s)
	if !ok {
		c.diags = append(c.diags, errorAt(attrRange(body, name, def), "Invalid action",
			"%s = %q: use \"allow\" or \"deny\".", name, *s))
		return
	}
	*out = a
}

func (c *settingsChecker) positive(v *int, body hcl.Body, name string, def hcl.Range, max int, out *int) {
	if v == nil {
		return
	}
	if *v <= 0 || *v > max {
		c.diags = append(c.diags, errorAt(attrRange(body, name, def), "Invalid number",
			"%s = %d: must be between 1 and %d.", name, *v, max))
		return
	}
	*out = *v
}

func (c *settingsChecker) port(v *int, body hcl.Body, name string, def hcl.Range, out *uint16) {
	var n int
	c.positive(v, body, name, def, 65535, &n)
	if n > 0 {
		*out = uint16(n)
	}
}

// proxyProtocolFrom checks the proxy_protocol_from of a listener block:
// required (and not empty) when proxy_protocol = true, a warning when set
// without it (kept, so that a reload turning proxy_protocol off, which only
// takes effect at the next restart, does not distrust the balancers early).
func (c *settingsChecker) proxyProtocolFrom(block string, enabled *bool, from []string, body hcl.Body, def hcl.Range, out *[]netip.Prefix) {
	on := enabled != nil && *enabled
	set := hasAttr(body, "proxy_protocol_from")
	switch {
	case on && !set:
		c.diags = append(c.diags, errorAt(attrRange(body, "proxy_protocol", def), "Missing proxy_protocol_from",
			"%s.proxy_protocol = true believes the client address in every PROXY header: list the load balancers that send them, e.g. proxy_protocol_from = [\"10.0.0.0/24\"]. Connections from any other peer are refused.", block))
		return
	case on && len(from) == 0:
		c.diags = append(c.diags, errorAt(attrRange(body, "proxy_protocol_from", def), "Empty proxy_protocol_from",
			"%s.proxy_protocol_from lists no peer, so every connection would be refused: list the load balancers that send PROXY headers, e.g. [\"10.0.0.0/24\"].", block))
		return
	case !on && set:
		c.diags = append(c.diags, warningAt(attrRange(body, "proxy_protocol_from", def), "proxy_protocol_from without proxy_protocol",
			"%s.proxy_protocol_from has no effect while proxy_protocol is not true.", block))
	}
	for i, s := range from {
		p, err := parsePrefix(s)
		if err != nil {
			c.diags = append(c.diags, errorAt(elemRange(body, "proxy_protocol_from", i, def), "Invalid CIDR",
				"%q: write the load balancers' address range such as \"10.0.0.0/24\" or a single address.", s))
			continue
		}
		if p.Bits() == 0 {
			c.diags = append(c.diags, warningAt(elemRange(body, "proxy_protocol_from", i, def), "proxy_protocol_from trusts every peer",
				"%q lets any client that reaches the listener claim any source address and so choose its segment; list only the load balancers.", s))
		}
		*out = append(*out, p)
	}
}

// hasAttr reports whether body sets attribute name.
func hasAttr(body hcl.Body, name string) bool {
	if b, ok := body.(*hclsyntax.Body); ok {
		_, ok := b.Attributes[name]
		return ok
	}
	attrs, _ := body.JustAttributes()
	_, ok := attrs[name]
	return ok
}

func (c *Config) applySettings(root *rawRoot) hcl.Diagnostics {
	var diags hcl.Diagnostics
	diags = append(diags, singleton("proxy", root.Proxy, func(b *rawProxy) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("transparent", root.Transparent, func(b *rawTransparent) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("admin", root.Admin, func(b *rawAdmin) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("tls", root.TLS, func(b *rawTLS) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("upstream", root.Upstream, func(b *rawUpstream) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("log", root.Log, func(b *rawLog) hcl.Range { return b.DefRange })...)
	diags = append(diags, singleton("limits", root.Limits, func(b *rawLimits) hcl.Range { return b.DefRange })...)

	c.Proxy, c.Transparent, c.Admin, c.TLS, c.Upstream, c.Log, c.Limits = defaultSettings()
	ck := &settingsChecker{}
	if len(root.Proxy) > 0 {
		b := root.Proxy[0]
		ck.listen(b.Listen, b.Body, "listen", b.DefRange, &c.Proxy.Listen)
		if b.ProxyProtocol != nil {
			c.Proxy.ProxyProtocol = *b.ProxyProtocol
		}
		ck.proxyProtocolFrom("proxy", b.ProxyProtocol, b.ProxyProtocolFrom, b.Body, b.DefRange, &c.ProxyProtocolFrom.Proxy)
		if c.Proxy.Listen == "" {
			ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "listen", b.DefRange), "Missing proxy listen address",
				"The explicit proxy needs an address; remove the attribute to use %s.", DefaultProxyListen))
		}
	}
	if len(root.Transparent) > 0 {
		b := root.Transparent[0]
		c.Transparent.Enabled = true
		c.Transparent.HTTPSListen, c.Transparent.HTTPListen = DefaultTransparentTLS, DefaultTransparentHTTP
		ck.listen(b.HTTPSListen, b.Body, "https_listen", b.DefRange, &c.Transparent.HTTPSListen)
		ck.listen(b.HTTPListen, b.Body, "http_listen", b.DefRange, &c.Transparent.HTTPListen)
		ck.port(b.HTTPSPort, b.Body, "https_port", b.DefRange, &c.Transparent.HTTPSPort)
		ck.port(b.HTTPPort, b.Body, "http_port", b.DefRange, &c.Transparent.HTTPPort)
		ck.listen(b.QUICListen, b.Body, "quic_listen", b.DefRange, &c.Transparent.QUICListen)
		ck.port(b.QUICPort, b.Body, "quic_port", b.DefRange, &c.Transparent.QUICPort)
		if b.ProxyProtocol != nil {
			c.Transparent.ProxyProtocol = *b.ProxyProtocol
		}
		ck.proxyProtocolFrom("transparent", b.ProxyProtocol, b.ProxyProtocolFrom, b.Body, b.DefRange, &c.ProxyProtocolFrom.Transparent)
	}
	if len(root.Admin) > 0 {
		b := root.Admin[0]
		ck.listen(b.Listen, b.Body, "listen", b.DefRange, &c.Admin.Listen)
		if b.PACProxy != nil {
			if _, _, err := net.SplitHostPort(strings.TrimPrefix(*b.PACProxy, "https://")); err != nil {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "pac_proxy", b.DefRange), "Invalid PAC proxy address",
					"%q: write the \"host:port\" clients should use, e.g. \"proxy.example.org:3128\", or \"https://host:port\" for the TLS proxy listener.", *b.PACProxy))
			} else {
				c.Admin.PACProxy = *b.PACProxy
			}
		}
		for i, d := range b.DirectDomains {
			p, err := parsePattern(strings.TrimPrefix(d, "."))
			if err != nil {
				ck.diags = append(ck.diags, errorAt(elemRange(b.Body, "pac_direct_domains", i, b.DefRange), "Invalid domain pattern", "%q: %v.", d, err))
				continue
			}
			c.Admin.DirectDomains = append(c.Admin.DirectDomains, p.base)
		}
		for i, n := range b.DirectNetworks {
			p, err := netip.ParsePrefix(n)
			if err != nil || !p.Addr().Is4() {
				ck.diags = append(ck.diags, errorAt(elemRange(b.Body, "pac_direct_networks", i, b.DefRange), "Invalid CIDR",
					"%q: PAC files can only test IPv4 networks; write e.g. \"10.0.0.0/8\".", n))
				continue
			}
			c.Admin.DirectNetworks = append(c.Admin.DirectNetworks, p.Masked().String())
		}
		if b.Pprof != nil {
			c.Admin.Pprof = *b.Pprof
		}
	}
	if len(root.TLS) > 0 {
		b := root.TLS[0]
		ck.duration(b.HelloTimeout, b.Body, "hello_timeout", b.DefRange, &c.TLS.HelloTimeout)
		ck.action(b.SNIMismatch, b.Body, "sni_mismatch", b.DefRange, &c.TLS.SNIMismatch)
		ck.action(b.MissingSNI, b.Body, "missing_sni", b.DefRange, &c.TLS.MissingSNI)
		ck.action(b.NonTLS, b.Body, "non_tls", b.DefRange, &c.TLS.NonTLS)
		ck.action(b.ECH, b.Body, "ech", b.DefRange, &c.TLS.ECH)
	}
	if len(root.Upstream) > 0 {
		b := root.Upstream[0]
		ck.duration(b.DialTimeout, b.Body, "dial_timeout", b.DefRange, &c.Upstream.DialTimeout)
		for k, v := range b.Hosts {
			name, ip, err := hostname.Normalize(k)
			if err != nil || ip.IsValid() {
				ck.diags = append(ck.diags, errorAt(mapKeyRange(b.Body, "hosts", k, b.DefRange), "Invalid host name",
					"upstream.hosts key %q is not a hostname.", k))
				continue
			}
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil || addr.Zone() != "" {
				ck.diags = append(ck.diags, errorAt(mapKeyRange(b.Body, "hosts", k, b.DefRange), "Invalid address",
					"upstream.hosts[%q] = %q is not an IP address.", k, v))
				continue
			}
			if _, dup := c.Upstream.Hosts[name]; dup {
				ck.diags = append(ck.diags, errorAt(mapKeyRange(b.Body, "hosts", k, b.DefRange), "Duplicate host name",
					"upstream.hosts has %q twice once names are normalised.", name))
				continue
			}
			c.Upstream.Hosts[name] = addr.Unmap()
		}
		for i, s := range b.AllowPrivate {
			p, err := parsePrefix(s)
			if err != nil {
				ck.diags = append(ck.diags, errorAt(elemRange(b.Body, "allow_private", i, b.DefRange), "Invalid CIDR",
					"%q: write an address range such as \"10.1.2.0/24\" or a single address.", s))
				continue
			}
			c.Upstream.AllowPrivate = append(c.Upstream.AllowPrivate, p)
		}
		for i, s := range b.DNSServers {
			ap, err := parseDNSServer(s)
			if err != nil {
				ck.diags = append(ck.diags, errorAt(elemRange(b.Body, "dns_servers", i, b.DefRange), "Invalid DNS server",
					"%q: write an IP address, optionally with a port, such as \"10.0.0.53\", \"10.0.0.53:5353\" or \"[2001:db8::53]:53\".", s))
				continue
			}
			c.Upstream.DNSServers = append(c.Upstream.DNSServers, ap)
		}
		if v := b.DNSCacheSize; v != nil {
			if *v < 0 || *v > MaxDNSCacheSize {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "dns_cache_size", b.DefRange), "Invalid number",
					"dns_cache_size = %d: must be between 0 (no cache) and %d.", *v, MaxDNSCacheSize))
			} else {
				c.Upstream.DNSCacheSize = *v
			}
		}
		ck.duration(b.DNSMaxTTL, b.Body, "dns_max_ttl", b.DefRange, &c.Upstream.DNSMaxTTL)
		if v := b.DNSServeStale; v != nil {
			if d, err := time.ParseDuration(*v); err != nil || d < 0 || d > MaxDNSServeStale {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "dns_serve_stale", b.DefRange), "Invalid duration",
					"dns_serve_stale = %q: write a Go duration from \"0s\" (never serve an expired answer) to \"168h\" (7 days), such as \"12h\".", *v))
			} else {
				c.Upstream.DNSServeStale = d
			}
		}
	}
	if len(root.Log) > 0 {
		b := root.Log[0]
		if b.Format != nil {
			if *b.Format != "ecs" && *b.Format != "cef" {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "format", b.DefRange), "Invalid log format",
					"format = %q: use \"ecs\" (Elastic Common Schema JSON lines) or \"cef\" (ArcSight CEF).", *b.Format))
			} else {
				c.Log.Format = *b.Format
			}
		}
		if b.Output != nil {
			if err := checkLogOutput(*b.Output); err != nil {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "output", b.DefRange), "Invalid log output",
					"output = %q: %v.", *b.Output, err))
			} else {
				c.Log.Output = *b.Output
			}
		}
		ck.positive(b.Queue, b.Body, "queue_size", b.DefRange, 1<<24, &c.Log.QueueSize)
		if b.LegacyFields != nil {
			c.Log.LegacyFields = *b.LegacyFields
		}
		// The tls_* files are read and checked by loader.logTLSFiles.
		if b.TLSServerName != nil {
			n := *b.TLSServerName
			if _, ipErr := netip.ParseAddr(n); n == "" || (ipErr != nil && strings.ContainsAny(n, " \t/:@")) {
				ck.diags = append(ck.diags, errorAt(attrRange(b.Body, "tls_server_name", b.DefRange), "Invalid TLS server name",
					"tls_server_name = %q: write the DNS name (or IP address) in the receiver's certificate, e.g. \"siem.example\".", n))
			} else {
				c.Log.TLSServerName = n
			}
		}
	}
	if len(root.Limits) > 0 {
		b := root.Limits[0]
		ck.positive(b.MaxConnections, b.Body, "max_connections", b.DefRange, 1<<24, &c.Limits.MaxConnections)
		ck.positive(b.PerSource, b.Body, "per_source", b.DefRange, 1<<24, &c.Limits.PerSource)
		ck.duration(b.IdleTimeout, b.Body, "idle_timeout", b.DefRange, &c.Limits.IdleTimeout)
		ck.duration(b.ShutdownGrace, b.Body, "shutdown_grace", b.DefRange, &c.Limits.ShutdownGrace)
		ck.duration(b.ReloadInterval, b.Body, "reload_interval", b.DefRange, &c.Limits.ReloadInterval)
		ck.duration(b.HeaderTimeout, b.Body, "header_timeout", b.DefRange, &c.Limits.HeaderTimeout)
		ck.positive(b.MaxHeaderBytes, b.Body, "max_header_bytes", b.DefRange, 1<<24, &c.Limits.MaxHeaderBytes)
		if b.EnforceOnReload != nil {
			c.Limits.EnforceOnReload = *b.EnforceOnReload
		}
	}
	return append(diags, ck.diags...)
}

// checkLogOutput validates a log.output value (SPEC §2 log block) with the
// one validator egress run uses, audit.ParseOutput; the error is its problem
// phrase.
func checkLogOutput(s string) error {
	var oe *audit.OutputError
	if err := audit.ParseOutput(s); errors.As(err, &oe) {
		return errors.New(oe.Problem)
	} else if err != nil {
		return err
	}
	return nil
}

// parsePrefix accepts a CIDR or a single address (as /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix shorter than /96")
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseDNSServer reads "ip" or "ip:port" (IPv6 with a port in brackets);
// the port defaults to 53.
func parseDNSServer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ap.Addr().Zone() != "" || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("not a server address")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
