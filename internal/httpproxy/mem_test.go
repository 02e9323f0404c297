package httpproxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/memconn"
)

// The loop is tested over in-memory connections that half-close like TCP.
type memConn = memconn.Conn

var memPair = memconn.Pair

// memListener is a net.Listener of in-memory connections: dial hands one
// end to Accept.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3128} }

// dial connects a client from src (ip:port) and returns its end.
func (l *memListener) dial(src netip.AddrPort) (*memConn, error) {
	client, server := memPair(net.TCPAddrFromAddrPort(src), l.Addr())
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-time.After(10 * time.Second):
		return nil, errors.New("not accepted within 10s")
	}
}
