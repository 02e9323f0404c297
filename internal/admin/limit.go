package admin

import (
	"net"
	"net/netip"
	"sync"
)

// Limits of the admin listener's open connections. Prometheus, the
// kubelet's probes and an operator's pprof need a handful; the caps keep a
// client that opens connections and sends nothing (each one a descriptor, a
// goroutine and buffers until ReadHeaderTimeout, or IdleTimeout after a
// request) from taking the descriptors and memory the proxy's own clients
// need: the proxy listeners' limits.max_connections does not count these.
const (
	MaxConns          = 1024 // open admin connections in all
	MaxConnsPerSource = 64   // open admin connections from one address
)

// Rejection reasons reported by LimitListener (the values of
// egress_connections_rejected_total's reason label).
const (
	RejectMaxConns  = "max_connections"
	RejectPerSource = "per_source"
)

// LimitListener caps ln's open connections at MaxConns in all and
// MaxConnsPerSource per source address. A connection over either is closed
// as soon as it is accepted, before a byte is read, and reported to
// rejected (which may be nil); Accept then waits for the next one. A slot
// is given back when the connection is closed.
func LimitListener(ln net.Listener, rejected func(reason string)) net.Listener {
	return &limitListener{Listener: ln, per: map[netip.Addr]int{}, rejected: rejected,
		max: MaxConns, maxPerSource: MaxConnsPerSource}
}

type limitListener struct {
	net.Listener
	rejected          func(reason string)
	max, maxPerSource int

	mu   sync.Mutex
	open int
	per  map[netip.Addr]int // open connections by source; no zero entries
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c)
		if reason := l.take(src); reason != "" {
			c.Close()
			if l.rejected != nil {
				l.rejected(reason)
			}
			continue
		}
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

// take claims a slot for src, or says which cap is full.
func (l *limitListener) take(src netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.max:
		return RejectMaxConns
	case l.per[src] >= l.maxPerSource:
		return RejectPerSource
	}
	l.open++
	l.per[src]++
	return ""
}

func (l *limitListener) give(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.per[src]--; l.per[src] <= 0 {
		delete(l.per, src)
	}
}

// Open reports the connections holding a slot (for tests).
func (l *limitListener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func sourceOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{} // not TCP (a test's pipe): one source
}

// limitedConn gives its slot back on its first Close.
type limitedConn struct {
	net.Conn
	l    *limitListener
	src  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.give(c.src) })
	return err
}
