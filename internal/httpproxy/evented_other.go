//go:build !linux

package httpproxy

import "net"

// The evented accept and TLS flow are Linux's; elsewhere every connection
// has its goroutine from its accept.

func eventedOK() bool                                 { return false }
func (s *Server) serveEvented(*net.TCPListener) error { panic("unreachable") }
func (cn *conn) settle() bool                         { return true }
func (cn *conn) repark() bool                         { return false }

// eventedSocket: a CONNECT's TLS flow runs on its connection's goroutine.
func eventedSocket(net.Conn) net.Conn { return nil }
