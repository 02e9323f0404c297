package conntrack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/pires/go-proxyproto"
)

var (
	// ErrProxyUntrusted: a listener with proxy_protocol = true was reached by
	// a peer outside its proxy_protocol_from; nothing it sent was read.
	ErrProxyUntrusted = errors.New("peer not in proxy_protocol_from")
	// ErrProxyHeader: a listener with proxy_protocol = true got no valid PROXY
	// v1/v2 header in time.
	ErrProxyHeader = errors.New("missing or invalid PROXY protocol header")
)

// ProxyHeader admits a connection accepted by a listener with proxy_protocol =
// true and returns the client address it stands for (SPEC §10.4):
//
//  1. before any byte is read, the real TCP peer must be in the listener's
//     proxy_protocol_from in st (the connection's configuration), so a client
//     that reaches the listener directly can never choose its segment;
//  2. then a PROXY v1/v2 header must arrive through br within
//     tls.hello_timeout; the bytes after it stay in br.
//
// On failure it counts egress_connections_rejected_total{listener, reason}
// (proxy_protocol_untrusted or proxy_protocol), logs a warning with the peer
// and returns an error wrapping ErrProxyUntrusted or ErrProxyHeader; the
// caller, which owns conn, closes it unanswered.
func (tr *Tracker) ProxyHeader(cfg *rules.Config, listener string, conn net.Conn, br *bufio.Reader) (netip.AddrPort, error) {
	peer := PeerAddr(conn)
	if !rules.Trusts(trustedPeers(cfg, listener), peer.Addr()) {
		tr.metrics.ConnectionsRejected.WithLabelValues(listener, metrics.RejectProxyProtocolUntrusted).Inc()
		tr.log.Warn("connection from a peer not in proxy_protocol_from refused before its PROXY header",
			"listener", listener, "peer", peer)
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyUntrusted, peer)
	}
	src, err := readProxyHeader(conn, br, cfg.TLS.HelloTimeout)
	if err != nil {
		tr.metrics.ConnectionsRejected.WithLabelValues(listener, metrics.RejectProxyProtocol).Inc()
		tr.log.Warn("connection without a valid PROXY header rejected", "listener", listener, "peer", peer, "err", err)
		return netip.AddrPort{}, err
	}
	return src, nil
}

// trustedPeers is the proxy_protocol_from that applies to listener.
func trustedPeers(cfg *rules.Config, listener string) []netip.Prefix {
	if listener == audit.ListenerProxy {
		return cfg.ProxyProtocolFrom.Proxy
	}
	return cfg.ProxyProtocolFrom.Transparent
}

// readProxyHeader reads a PROXY protocol v1 or v2 header from br (which reads
// conn) within timeout and returns the client address it claims. A v2 LOCAL
// header (a load balancer's health check) yields the real peer address.
// Bytes after the header stay in br.
func readProxyHeader(conn net.Conn, br *bufio.Reader, timeout time.Duration) (netip.AddrPort, error) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	h, err := proxyproto.Read(br)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %v", ErrProxyHeader, err)
	}
	if h.Command.IsLocal() {
		return PeerAddr(conn), nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: not a TCP source address", ErrProxyHeader)
	}
	ap := src.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// PeerAddr is the connection's remote address.
func PeerAddr(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap
}
