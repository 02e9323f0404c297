//go:build !linux

package tunnel

import (
	"net"
	"syscall"
)

// inlineReader reads one way's source for the inline phase (Read into a
// buffer from inlineBufs; inline_linux.go waits without one).
type inlineReader struct{ src net.Conn }

func (r *inlineReader) init(src net.Conn, _ syscall.RawConn) { r.src = src }

func (r *inlineReader) read() (*[inlineSize]byte, int, error) { return readPlain(r.src) }
