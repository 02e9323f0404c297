//go:build !linux

package tunnel

import (
	"errors"
	"net"
)

// Parking needs epoll; elsewhere tunnels keep their goroutines.

func canPark(...net.Conn) bool { return false }
func park(*Pipe) error         { return errors.New("tunnel: parking not supported") }
func unregister(*Pipe)         {}

// Parked returns how many tunnels are parked now.
func Parked() int { return 0 }
