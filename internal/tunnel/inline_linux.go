package tunnel

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/egress-proxy/egress/internal/rawsys"
	"golang.org/x/sys/unix"
)

// inlineReader reads one way's source for the inline phase. On a socket it
// waits for input without a buffer (Go's poller, with the source's read
// deadline) and takes one from inlineBufs only for the read(2) itself: a way
// waiting for its peer holds no buffer, so the buffers in use are the
// copies in progress, not the tunnels open. Anything else is read with Read.
// It lives in its direction and is set up once (init): a read allocates
// nothing. Only the way's goroutine uses it.
type inlineReader struct {
	src net.Conn
	rc  syscall.RawConn    // nil: not a socket
	fn  func(uintptr) bool // r.readFD, made once
	// The last read's result, set by readFD.
	buf  *[inlineSize]byte
	n    int
	serr error
}

func (r *inlineReader) init(src net.Conn, rc syscall.RawConn) {
	if r.src != nil {
		return
	}
	r.src, r.rc = src, rc
	if rc != nil {
		r.fn = r.readFD
	}
}

// readFD is the RawConn.Read callback: false (wait for input) on EAGAIN.
func (r *inlineReader) readFD(fd uintptr) bool {
	b := inlineBufs.Get().(*[inlineSize]byte)
	for {
		r.n, r.serr = rawsys.Read(int(fd), b[:])
		if r.serr != unix.EINTR {
			break
		}
	}
	if r.serr == unix.EAGAIN {
		inlineBufs.Put(b)
		return false // wait for input (or the deadline) without a buffer
	}
	r.buf = b
	return true
}

// read returns a buffer from inlineBufs holding n > 0 bytes, which the
// caller puts back, or an error (io.EOF at the end of the source).
func (r *inlineReader) read() (*[inlineSize]byte, int, error) {
	if r.rc == nil {
		return readPlain(r.src)
	}
	r.buf, r.n, r.serr = nil, 0, nil
	err := r.rc.Read(r.fn)
	buf, n, serr := r.buf, r.n, r.serr
	r.buf = nil
	switch {
	case err != nil: // the deadline, or the tunnel closed
		if buf != nil {
			inlineBufs.Put(buf)
		}
		return nil, 0, err
	case serr != nil:
		inlineBufs.Put(buf)
		return nil, 0, &net.OpError{Op: "read", Net: "tcp", Source: r.src.LocalAddr(), Addr: r.src.RemoteAddr(), Err: os.NewSyscallError("read", serr)}
	case n <= 0:
		inlineBufs.Put(buf)
		return nil, 0, io.EOF
	}
	return buf, n, nil
}
