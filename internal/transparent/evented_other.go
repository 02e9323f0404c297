//go:build !linux

package transparent

import "net"

// The evented accept needs the parkers (epoll): elsewhere every connection
// has a goroutine.
func eventedOK() bool { return false }

func (s *Server) serveEvented(*net.TCPListener) error { panic("unreachable") }
