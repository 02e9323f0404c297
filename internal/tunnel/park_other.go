//go:build !linux

package tunnel

import (
	"errors"
	"net"
)

// Parking needs epoll; elsewhere tunnels keep their goroutines.

func canPark(...net.Conn) bool           { return false }
func parkLocked(*Pipe, *direction) error { return errors.New("tunnel: parking not supported") }
func unparkLocked(*Pipe, *direction)     {}
func forget(*Pipe)                       {}

// Nor do they detach their connections (detach_linux.go).
func detachLocked(*Pipe, bool) {}
func attachLocked(*Pipe) error { return nil }
func closeRawLocked(*Pipe)     {}

// Nor does a parker relay a tunnel (relay_linux.go).
func startDetachedLocked(*Pipe) bool                                 { return false }
func (p *Pipe) relayLocked(*direction, *[inlineSize]byte, bool) bool { return false }
