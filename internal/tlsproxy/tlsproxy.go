// Package tlsproxy owns one TLS flow from its first byte to its end: read the
// ClientHello (parsed in internal/sni), decide every name (internal/rules),
// resolve and check the destination (internal/upstream), dial it, replay
// every byte the client sent, and hand both connections to the tunnel
// (internal/tunnel). It serves CONNECT tunnels after their 200
// (internal/httpproxy) and the transparent TLS listener
// (internal/transparent), and records one outcome per flow
// (internal/outcome). Serve runs a flow on its caller's goroutine;
// ServeEvented (Linux: the transparent listener, CONNECT) runs the same steps on the
// tunnel package's event loops, with no goroutine per flow
// (evented_linux.go).
//
// A flow is decided under the configuration in force when its hello has
// arrived; a CONNECT's outer name, decided before the 200 under the same
// configuration, is not decided again.
package tlsproxy

import (
	"net"
	"net/netip"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/conntrack"
	"github.com/egress-proxy/egress/internal/identity"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/sni"
)

// Proxy serves TLS flows. Its fields are shared by every flow.
type Proxy struct {
	Active  *active.Store
	Record  *outcome.Recorder
	Metrics *metrics.Metrics
	// Panicked, if set, reports a panic recovered in a tunnel's goroutines
	// (conntrack.Tracker.Panicked: logged with its stack, counted).
	Panicked func(listener string, v any)
}

// Flow is a client connection whose next bytes should be a ClientHello: a
// CONNECT tunnel after its 200, or a transparent TLS connection.
type Flow struct {
	Listener string
	Client   net.Conn       // the client connection; a *net.TCPConn keeps the copy in the kernel
	Buffered []byte         // bytes already read from the client (behind the CONNECT, after a PROXY header); Serve owns them
	Src      netip.AddrPort // effective client address (after PROXY protocol)
	Start    time.Time      // the 200 or the accept: hello_timeout counts from here
	Port     uint16         // destination port
	// Conn is the client connection's registration (from its accept): a
	// shutdown closes it while the hello is pending, and once the flow is
	// decided a reload that denies its names closes it.
	Conn *conntrack.Conn
	// Done is called exactly once when the flow is over: the client is
	// closed and its event written. Serve may return before that: an allowed
	// tunnel runs on without the caller's goroutine.
	Done func()

	// Connect is set for a CONNECT tunnel; transparent flows leave it nil
	// and their destination is the SNI.
	Connect *Connect
	// OrigDest, transparent only: where the client meant to connect (before
	// the firewall's redirect). Events name it when no destination was
	// resolved (no SNI, a denied name).
	OrigDest netip.AddrPort
}

// Connect is what a CONNECT established before its 200.
type Connect struct {
	Outer rules.Outer   // the target as sent, normalised and decided
	State *active.State // the configuration it was decided under
	Dest  netip.Addr    // the address resolved and checked for it
	// Identity is the client's identity on the explicit proxy (SPEC
	// §10.2); the zero value when unidentified.
	Identity identity.Identity
}

// alertWriteTimeout bounds the write of a TLS alert to a client.
const alertWriteTimeout = 5 * time.Second

// Serve runs f to its end. It owns f.Client from the call on: it closes it
// and then calls f.Done, possibly after it has returned.
func (p *Proxy) Serve(f *Flow) {
	fl := &flow{p: p, f: f}
	if !fl.run() {
		fl.finish()
	}
}

// flow is one Serve in progress. Only Serve's goroutine uses it until the
// tunnel takes over; then only the tunnel's OnDone.
type flow struct {
	p     *Proxy
	f     *Flow
	st    *active.State
	o     *outcome.Outcome
	seg   *rules.Segment
	hello *sni.Hello
	raw   []byte // every byte the client sent so far, for the replay
	dest  netip.Addr
	names rules.Names
}

// run takes the flow as far as it goes; true when a tunnel took it over.
func (fl *flow) run() bool {
	err := fl.readHello()
	if err != nil && !fl.helloFailed(err) {
		return false
	}
	d, ok := fl.decide()
	if !ok {
		return false
	}
	if !fl.resolve(d) {
		return false
	}
	server, ok := fl.dial()
	if !ok {
		return false
	}
	return fl.start(server)
}

// finish ends a flow that did not become a tunnel, or whose tunnel is over.
func (fl *flow) finish() {
	if fl.o != nil {
		fl.o.Event.Duration = time.Since(fl.f.Start)
		fl.o.Finish()
	}
	fl.f.Client.Close()
	if fl.f.Done != nil {
		fl.f.Done()
	}
}

// alert sends a fatal TLS alert to the client.
func (fl *flow) alert(desc uint8) {
	fl.f.Client.SetWriteDeadline(time.Now().Add(alertWriteTimeout))
	sni.WriteAlert(fl.f.Client, desc)
}

// deny records a deny by a protocol check (monitor hits of the CONNECT kept)
// and sends alert (0: none).
func (fl *flow) deny(reason rules.Reason, alert uint8, errText string) {
	var monitor []*rules.Rule
	if c := fl.f.Connect; c != nil {
		monitor = c.Outer.Decision.Monitor
	}
	fl.o.Deny(reason, fl.seg, monitor)
	fl.o.Event.Error = errText
	if alert != 0 {
		fl.alert(alert)
	}
}
