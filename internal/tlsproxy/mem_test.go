package tlsproxy

import (
	"net"
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
