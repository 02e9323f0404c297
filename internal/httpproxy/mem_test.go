package httpproxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// memConn is one end of an in-memory full-duplex connection that can be
// half-closed, like TCP: each direction is its own net.Pipe, so CloseWrite
// gives the peer EOF while the other direction still flows. net.Pipe alone
// cannot half-close, and the tunnel would report every clean end as an error.
type memConn struct {
	r, w          net.Conn // r reads one pipe, w writes the other
	local, remote net.Addr
}

// memPair returns two connected ends; a's LocalAddr is aAddr, b's is bAddr.
func memPair(aAddr, bAddr net.Addr) (a, b *memConn) {
	up1, up2 := net.Pipe()     // a → b
	down1, down2 := net.Pipe() // b → a
	a = &memConn{r: down2, w: up1, local: aAddr, remote: bAddr}
	b = &memConn{r: up2, w: down1, local: bAddr, remote: aAddr}
	return a, b
}

func (c *memConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *memConn) CloseWrite() error           { return c.w.Close() }
func (c *memConn) Close() error {
	c.r.Close()
	c.w.Close()
	return nil
}
func (c *memConn) LocalAddr() net.Addr                { return c.local }
func (c *memConn) RemoteAddr() net.Addr               { return c.remote }
func (c *memConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }
func (c *memConn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	return c.w.SetWriteDeadline(t)
}

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
