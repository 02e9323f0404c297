package httpproxy

import (
	"errors"
	"io"
	"sync/atomic"
)

// errBodyClosed is what a read of a request body returns once the proxy has
// let go of it.
var errBodyClosed = errors.New("egress: request body closed")

// requestBody is a client's request body as the proxy forwards it. The body
// net/http's parser returns reads from the client connection's buffered
// reader, which the connection loop reuses for the next request: a body must
// never be read by anyone once the loop moves on. requestBody makes that
// ownership explicit:
//
//   - Close marks it closed without draining (net/http's body drains to EOF
//     on Close, which would let a client make the proxy read gigabytes);
//   - a Read after Close fails;
//   - the loop waits until the goroutine that copies it upstream has
//     returned before it touches the reader again (forward's join);
//   - Complete says whether it was read to its end: if not, the client
//     connection is closed, since the rest of the body sits where the next
//     request would be read.
type requestBody struct {
	r      io.Reader // the parser's body
	cl     int64     // Content-Length, or -1 (chunked)
	n      atomic.Int64
	eof    atomic.Bool
	closed atomic.Bool
}

func newRequestBody(r io.Reader, contentLength int64) *requestBody {
	return &requestBody{r: r, cl: contentLength}
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	k, err := b.r.Read(p)
	b.n.Add(int64(k))
	if err == io.EOF {
		b.eof.Store(true)
	}
	return k, err
}

// Close lets go of the body without reading the rest of it.
func (b *requestBody) Close() error {
	b.closed.Store(true)
	return nil
}

// Complete reports whether the body was read to its end (nil: no body).
func (b *requestBody) Complete() bool {
	return b == nil || b.eof.Load() || (b.cl >= 0 && b.n.Load() >= b.cl)
}

// N is how many body bytes were read (nil: no body, 0).
func (b *requestBody) N() int64 {
	if b == nil {
		return 0
	}
	return b.n.Load()
}
