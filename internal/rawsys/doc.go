// Package rawsys owns the system calls that the event loops (the tunnel
// package's parkers, the evented TLS flow) make on non-blocking sockets:
// read, write, accept4, connect, socket options, shutdown, close and a
// zero-timeout epoll_wait. None of them can block, so they are made with
// RawSyscall, without the runtime's entersyscall/exitsyscall: that spares
// the scheduler's bookkeeping on every call and, above all, waking the
// runtime's sysmon thread, which the first ordinary system call after every
// idle moment does (futex wake-up, then ~50 short sleeps of its own). On a
// proxy serving a few thousand short connections a second those wake-ups
// were a tenth of its CPU (docs/performance.md).
//
// Use these only on a descriptor in non-blocking mode (or for a call that
// never waits); a call that may wait belongs to package unix.
package rawsys
