// Package audit owns the SIEM events of egress: the Event model (one event per
// decision, SPEC §6) and the listener names it carries (also the metrics'
// listener label), its two wire encodings (ECS JSON lines and ArcSight CEF) with
// the one list of ECS fields (ECSFields) the encoder and both decoders are tested
// against, the decoding of ECS lines back into events (for `egress replay`), the
// log.output syntax (ParseOutput, also the config loader's check), and the sinks
// that ship them (stdout, an appended file reopened for logrotate, syslog over
// UDP, TCP and TLS) behind a bounded, non-blocking queue.
//
// Traffic never waits for the SIEM: Logger.Log encodes the event on the caller's
// goroutine into a pooled buffer and hands it to a bounded queue; when the queue is
// full (slow or absent sink) the event is dropped and counted. The field reference
// and shipping recipes are in docs/siem.md.
package audit

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"time"
)

// Sentinel errors.
var (
	// ErrFormat: the log format is neither "ecs" nor "cef".
	ErrFormat = errors.New("audit: unknown log format")
	// ErrOutput: the log output is not one of the supported forms.
	ErrOutput = errors.New("audit: invalid log output")
	// ErrNotEvent: a line given to ParseECS is not an egress ECS event.
	ErrNotEvent = errors.New("audit: not an egress ECS event")
	// ErrClosed: the Logger has been closed.
	ErrClosed = errors.New("audit: logger closed")
	// ErrFlushTimeout: Close gave up on a sink write that did not return.
	ErrFlushTimeout = errors.New("audit: sink write still blocked after the flush timeout")
)

// Format names an event encoding.
type Format string

// Supported encodings.
const (
	FormatECS Format = "ecs" // Elastic Common Schema, one JSON object per line
	FormatCEF Format = "cef" // ArcSight Common Event Format, CEF:0
)

// Action values of Event.Action (the same strings as the policy's actions).
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// Listener names: the values of Event.Listener (egress.listener, SPEC §6) and
// of the "listener" label of every metric (package metrics uses these). This is
// their one definition: the names are part of the event contract, and audit
// imports no other egress package, so every package can import it.
const (
	ListenerProxy            = "proxy"
	ListenerTransparentHTTPS = "transparent_https"
	ListenerTransparentHTTP  = "transparent_http"
	// ListenerProxyTLS is the explicit proxy behind TLS (proxy.tls_listen,
	// SPEC §10.2).
	ListenerProxyTLS        = "proxy_tls"
	ListenerTransparentQUIC = "transparent_quic" // UDP (SPEC §10.1)
)

// Listeners is every listener name, in a stable order.
var Listeners = []string{ListenerProxy, ListenerTransparentHTTPS, ListenerTransparentHTTP, ListenerProxyTLS, ListenerTransparentQUIC}

// ECSVersion is the ECS version the events declare in "ecs.version".
const ECSVersion = "8.11.0"

// MaxFieldLen bounds every string field of an encoded event, in bytes of input
// (before escaping). Longer values are cut at a character boundary, so that one
// hostile request line cannot make a megabyte-sized event.
const MaxFieldLen = 2048

// MaxGroups bounds user.group.name: a directory user in hundreds of groups
// gets the first MaxGroups (sorted) in an event.
const MaxGroups = 64

// Exception documents the deciding rule when it is an exception ("dérogation").
type Exception struct {
	Owner   string `json:"owner,omitempty"`
	Ticket  string `json:"ticket,omitempty"`
	Expires string `json:"expires,omitempty"`
}

// MonitorHit is the would-be decision of a monitor rule that matched.
type MonitorHit struct {
	Rule    string `json:"rule,omitempty"`
	Ruleset string `json:"ruleset,omitempty"`
	Action  string `json:"action,omitempty"`
}

// Event is one decision, flat in Go, nested on the wire (ECS names in comments).
//
// Zero values are omitted from the encodings, with one exception: source.bytes and
// destination.bytes are always written when Duration > 0 or either count is
// non-zero, so a closed tunnel that carried nothing still says "0 bytes", while a
// connection denied at once carries no byte counts at all.
type Event struct {
	Time          time.Time     // @timestamp (RFC 3339, UTC); zero = time of Log
	ID            string        // event.id; empty = Log assigns NewID()
	Action        string        // event.action allow|deny
	Reason        string        // event.reason
	Rule          string        // rule.name
	Ruleset       string        // rule.ruleset
	ConfigVersion string        // egress.config_version
	Exception     *Exception    // egress.exception {owner,ticket,expires}
	Segment       string        // egress.segment
	Listener      string        // egress.listener proxy|transparent_https|transparent_http|transparent_quic
	Monitor       []MonitorHit  // egress.monitor [{rule,ruleset,action}]
	SourceIP      string        // source.ip
	SourcePort    int           // source.port
	DestDomain    string        // destination.domain
	DestIP        string        // destination.ip
	DestPort      int           // destination.port
	SNI           string        // tls.client.server_name
	JA4           string        // egress.tls.ja4 (ECS has no JA4 field: custom namespace)
	ECH           *bool         // egress.tls.ech (nil = not TLS)
	Method        string        // http.request.method (CONNECT on every proxy tunnel)
	URLDomain     string        // url.domain
	URLPath       string        // url.path (decoded, no query)
	User          string        // user.name (explicit proxy: the authenticated user or device)
	UserDomain    string        // user.domain (Kerberos realm or directory domain)
	UserGroups    []string      // user.group.name (a list)
	AuthMethod    string        // egress.auth.method basic|negotiate|certificate
	Status        int           // http.response.status_code (200 on an allowed CONNECT)
	SourceBytes   int64         // source.bytes (client to destination; request head included)
	DestBytes     int64         // destination.bytes (destination to client; response head included)
	Duration      time.Duration // event.duration (ns)
	Error         string        // error.message (dial failures etc.)
}

// hasBytes reports whether the byte counts belong in the encoding.
func (e *Event) hasBytes() bool {
	return e.Duration > 0 || e.SourceBytes != 0 || e.DestBytes != 0
}

// outcome is event.outcome / CEF outcome: success for an allow that did not fail.
func (e *Event) outcome() string {
	switch {
	case e.Action == ActionAllow && e.Error == "":
		return "success"
	case e.Action == ActionAllow || e.Action == ActionDeny:
		return "failure"
	default:
		return "unknown"
	}
}

// NewID returns a unique event id: a UUIDv7 (48-bit Unix milliseconds, then 74
// random bits) in its canonical 36-character form, so ids sort by time. The random
// bits come from the runtime's per-thread ChaCha8 generator (seeded by the OS):
// cheap, lock-free and safe for concurrent use.
func NewID() string {
	var u [16]byte
	ms := uint64(time.Now().UnixMilli())
	r1, r2 := rand.Uint64(), rand.Uint64()
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = 0x70 | byte(r1>>60)&0x0f // version 7
	u[7] = byte(r1 >> 52)
	u[8] = 0x80 | byte(r1>>46)&0x3f // variant 10
	for i := 9; i < 16; i++ {
		u[i] = byte(r2 >> (8 * (i - 9)))
	}
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
