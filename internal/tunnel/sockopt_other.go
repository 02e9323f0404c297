//go:build !linux

package tunnel

import (
	"syscall"
	"time"
)

// Elsewhere the kernel's defaults stay, and the idle watchdog sees only the
// bytes each copy reports when it looks up.

// ListenControl is the net.ListenConfig Control of a listener whose accepted
// connections carry tunnels (see sockopt_linux.go); nothing here.
func ListenControl(_, _ string, _ syscall.RawConn) error { return nil }

func tune(syscall.RawConn, bool, time.Duration) {}
func tuneLate(syscall.RawConn, time.Duration)   {}
func tuneBulk(syscall.RawConn)                  {}
func moved(...syscall.RawConn) (uint64, bool)   { return 0, false }
func abortIfQueued(syscall.RawConn)             {}
