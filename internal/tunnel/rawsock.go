package tunnel

import "syscall"

// rawSock is one socket of a detached tunnel, held as a bare descriptor
// (detach_linux.go): a syscall.RawConn whose Control runs on it, so that the
// parker, the socket options and the idle watchdog's counters work on it as
// on a connection's. Its Read and Write are not used (no way runs while the
// tunnel is detached). fd is valid while the tunnel is detached and fd >= 0;
// only the tunnel, under Pipe.mu, changes or closes it.
type rawSock struct{ fd int32 }

func (s *rawSock) Control(f func(fd uintptr)) error {
	if s.fd < 0 {
		return syscall.EBADF
	}
	f(uintptr(s.fd))
	return nil
}

func (s *rawSock) Read(func(fd uintptr) bool) error  { return syscall.EINVAL }
func (s *rawSock) Write(func(fd uintptr) bool) error { return syscall.EINVAL }
