package rawsys

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errno turns a raw call's error number into an error without allocating
// for the common ones (as package unix does).
func errno(e unix.Errno) error {
	switch e {
	case 0:
		return nil
	case unix.EAGAIN:
		return unix.EAGAIN
	case unix.EINTR:
		return unix.EINTR
	case unix.EINPROGRESS:
		return unix.EINPROGRESS
	case unix.EEXIST:
		return unix.EEXIST
	case unix.ENOENT:
		return unix.ENOENT
	}
	return e
}

// Read reads into b (EINTR retried): n < 0 never; err unix.EAGAIN when
// nothing is there.
func Read(fd int, b []byte) (int, error) { return rw(unix.SYS_READ, fd, b) }

// Write writes from b once (EINTR retried): the count the socket took.
func Write(fd int, b []byte) (int, error) { return rw(unix.SYS_WRITE, fd, b) }

// rw makes one read or write (trap) of b on fd, EINTR retried.
func rw(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, errno(e)
		}
		return int(n), nil
	}
}

// Close closes fd. Only for a socket whose close cannot wait: no SO_LINGER
// with a timeout (egress sets none, or a zero one that resets).
func Close(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errno(e)
}

// Shutdown shuts a half (unix.SHUT_WR, ...) of a socket.
func Shutdown(fd, how int) error {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return errno(e)
}

// EpollCtl adds, changes or removes (op) fd in epfd's set; ev may be nil
// for unix.EPOLL_CTL_DEL. epoll_ctl never waits.
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno(e)
}

// EpollPoll collects the ready events of epfd without waiting.
func EpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, errno(e)
		}
		return int(n), nil
	}
}

// Accept4 accepts one connection from a non-blocking listener, the new
// socket non-blocking and close-on-exec, with its peer's address (IPv4
// and IPv6; the zero AddrPort for another family).
func Accept4(fd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	for {
		nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, netip.AddrPort{}, errno(e)
		}
		return int(nfd), addrPort(&rsa), nil
	}
}

func addrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it (network order).
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(p uint16) uint16 {
	var v uint16
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(p>>8), byte(p)
	return v
}

// Socket opens a non-blocking, close-on-exec TCP socket for ap's family
// (an IPv4-mapped address is IPv4).
func Socket(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET6
	if ap.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, errno(e)
	}
	return int(fd), nil
}

// Connect starts connecting a non-blocking socket (from Socket(ap)) to ap:
// unix.EINPROGRESS while it is under way.
func Connect(fd int, ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	var p unsafe.Pointer
	var l uintptr
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	if a.Is4() {
		sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.As4()}
		p, l = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			return unix.EINVAL // a scoped destination is dialed by package net
		}
		p, l = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	for {
		_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), l)
		if e == unix.EINTR {
			continue
		}
		return errno(e)
	}
}

// SetsockoptInt sets an int socket option.
func SetsockoptInt(fd, level, opt, value int) error {
	v := int32(value)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
	return errno(e)
}

// GetsockoptInt reads an int socket option.
func GetsockoptInt(fd, level, opt int) (int, error) {
	var v int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	return int(v), errno(e)
}

// Getsockopt reads a socket option into the n bytes at p (the length the
// kernel wrote).
func Getsockopt(fd, level, opt int, p unsafe.Pointer, n uint32) (uint32, error) {
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	return n, errno(e)
}

// Dup duplicates fd (close-on-exec).
func Dup(fd int) (int, error) {
	nfd, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, errno(e)
	}
	return int(nfd), nil
}

// Getsockname returns a socket's own address (IPv4 and IPv6; the zero
// AddrPort for another family).
func Getsockname(fd int) (netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return netip.AddrPort{}, errno(e)
	}
	return addrPort(&rsa), nil
}
