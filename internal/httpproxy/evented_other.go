//go:build !linux

package httpproxy

import "net"

// eventedSocket: the evented flow is Linux's; elsewhere a CONNECT's TLS flow
// runs on its connection's goroutine.
func eventedSocket(net.Conn) net.Conn { return nil }
