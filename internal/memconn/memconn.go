// Package memconn owns in-memory connections for tests: a full-duplex pair
// that can be half-closed like TCP (each direction is its own net.Pipe, so
// CloseWrite gives the peer EOF while the other direction still flows;
// net.Pipe alone cannot half-close, and a tunnel would report every clean
// end as an error). The TLS flow and the HTTP loop are unit-tested over it
// without sockets.
package memconn

import (
	"net"
	"time"
)

// Conn is one end of a pair.
type Conn struct {
	r, w          net.Conn // r reads one pipe, w writes the other
	local, remote net.Addr
}

// Pair returns two connected ends; a's LocalAddr is aAddr, b's is bAddr.
func Pair(aAddr, bAddr net.Addr) (a, b *Conn) {
	up1, up2 := net.Pipe()     // a → b
	down1, down2 := net.Pipe() // b → a
	a = &Conn{r: down2, w: up1, local: aAddr, remote: bAddr}
	b = &Conn{r: up2, w: down1, local: bAddr, remote: aAddr}
	return a, b
}

func (c *Conn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *Conn) Write(p []byte) (int, error) { return c.w.Write(p) }

// CloseWrite ends this direction: the peer reads EOF, and can still write.
func (c *Conn) CloseWrite() error { return c.w.Close() }

// Close ends both directions.
func (c *Conn) Close() error {
	c.r.Close()
	c.w.Close()
	return nil
}

func (c *Conn) LocalAddr() net.Addr                { return c.local }
func (c *Conn) RemoteAddr() net.Addr               { return c.remote }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }
func (c *Conn) SetDeadline(t time.Time) error {
	c.r.SetReadDeadline(t)
	return c.w.SetWriteDeadline(t)
}
