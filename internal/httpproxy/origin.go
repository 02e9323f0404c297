package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/prometheus/client_golang/prometheus"
)

// Upstream connections for plain HTTP.
//
// Each client connection owns at most one upstream connection (an origin):
// the one its last request was forwarded on, kept for the next request if
// that goes to the same checked address and port under the same config.
// There is no pool shared between clients, so the upstream sockets a client
// can hold are bounded by its own connections (limits.per_source,
// limits.max_connections), an origin can never carry a request whose address
// was not checked for it, and a reload or a DNS change can never send a
// request over a connection dialed for another address.
//
// The client connection's goroutine is the only one that uses an origin. Two
// other parties may close it while it is idle between requests: its idle
// timer and a configuration swap. state arbitrates: only an idle origin can
// be closed by them, and the loop takes an origin back from idle with a
// compare-and-swap, so a request never runs on a connection being closed.

// originIdle is how long an idle upstream connection is kept for its client's
// next request (capped by limits.idle_timeout). Short: a browser's next
// request on the same site comes within seconds, and an idle socket is an fd.
const originIdle = 15 * time.Second

// originKey is what a kept connection may be reused for.
type originKey struct {
	addr    netip.Addr
	port    uint16
	version string // config version: a reload may change what may be dialed
}

const (
	originBusy int32 = iota
	originIdleState
	originClosed
)

// origin is one upstream connection owned by one client connection.
type origin struct {
	key   originKey
	c     net.Conn      // a *net.TCPConn unless Dialer.DialConn made it
	rd    originReader  // c under deadlines and a header limit
	br    *bufio.Reader // reads rd; owned by the client's goroutine
	state atomic.Int32
	timer *time.Timer
	gauge prometheus.Gauge
	once  sync.Once
}

// originReaders recycles the response readers of origins.
var originReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func newOrigin(key originKey, c net.Conn, gauge prometheus.Gauge) *origin {
	o := &origin{key: key, c: c, gauge: gauge}
	o.rd.c = c
	o.br = originReaders.Get().(*bufio.Reader)
	o.br.Reset(&o.rd)
	gauge.Inc()
	return o
}

// idle parks o between requests: it closes itself after d unless taken back.
// Its reader goes back to the pool meanwhile (the caller made sure it holds
// nothing): an idle origin costs its socket only.
func (o *origin) idle(d time.Duration) {
	o.br.Reset(nil)
	originReaders.Put(o.br)
	o.br = nil
	o.state.Store(originIdleState)
	if o.timer == nil {
		o.timer = time.AfterFunc(d, o.closeIfIdle)
	} else {
		o.timer.Reset(d)
	}
}

// take makes an idle origin busy again; false if it was closed meanwhile.
func (o *origin) take() bool {
	if o.timer != nil {
		o.timer.Stop()
	}
	if !o.state.CompareAndSwap(originIdleState, originBusy) {
		return false
	}
	o.br = originReaders.Get().(*bufio.Reader)
	o.br.Reset(&o.rd)
	return true
}

// closeIfIdle closes o if it is idle (timer, configuration swap). Safe from
// any goroutine.
func (o *origin) closeIfIdle() {
	if o.state.CompareAndSwap(originIdleState, originClosed) {
		o.c.Close()
		o.gaugeDone()
	}
}

// alive reports whether an idle connection taken back still looks usable:
// the server has not closed it nor sent anything unasked.
func (o *origin) alive() bool {
	return quietOpen(o.c)
}

// release closes a busy origin for good and recycles its reader. Only the
// owner calls it, and only once nothing reads from br any more.
func (o *origin) release() {
	if o.timer != nil {
		o.timer.Stop()
	}
	if o.state.Swap(originClosed) != originClosed {
		o.c.Close()
		o.gaugeDone()
	}
	if o.br != nil {
		o.br.Reset(nil)
		originReaders.Put(o.br)
		o.br = nil
	}
}

func (o *origin) gaugeDone() { o.once.Do(o.gauge.Dec) }

// originReader reads an origin under a deadline per read (idle) and, while
// a response head is read, a byte budget (limit > 0).
type originReader struct {
	c     net.Conn
	idle  time.Duration
	limit int64
}

// arm sets the deadline per read and the byte budget (0: none) of the next
// reads.
func (r *originReader) arm(idle time.Duration, limit int64) {
	r.idle, r.limit = idle, limit
	if limit > 0 {
		r.limit += 4096 // what the reader may hold past the head
	}
}

func (r *originReader) Read(p []byte) (int, error) {
	if r.limit < 0 {
		return 0, errHeaderTooLarge
	}
	if r.limit > 0 && int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	if r.idle > 0 {
		r.c.SetReadDeadline(time.Now().Add(r.idle))
	}
	k, err := r.c.Read(p)
	if r.limit > 0 {
		if r.limit -= int64(k); r.limit == 0 {
			r.limit = -1
		}
	}
	return k, err
}

// deadlineWriter writes to c with a deadline per write: a peer that stops
// reading for d ends the write.
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if w.d > 0 {
		w.c.SetWriteDeadline(time.Now().Add(w.d))
		defer w.c.SetWriteDeadline(time.Time{})
	}
	return w.c.Write(p)
}

// originFor returns the connection to use for a request to key: the client's
// kept origin if it matches and is alive, else a new dial of the checked
// address (the kept one, if any, is closed first: one per client).
func (cn *conn) originFor(st *active.State, key originKey) (o *origin, reused bool, err error) {
	if o = cn.up.Load(); o != nil {
		if o.key == key && o.take() && o.alive() {
			return o, true, nil
		}
		cn.dropOrigin()
	}
	m := cn.s.Metrics
	t0 := time.Now()
	c, err := st.Dialer.Dial(context.Background(), key.addr, key.port)
	m.UpstreamDial.Observe(time.Since(t0).Seconds())
	if err != nil {
		return nil, false, err
	}
	o = newOrigin(key, c, m.UpstreamConnections.WithLabelValues(cn.s.listener()))
	cn.up.Store(o)
	// A close that ran during the dial did not see this origin: stored
	// first, then checked, so one of the two always closes it.
	if why := cn.t.ClosedBy(); why != "" {
		return nil, false, errors.New("closed: " + why)
	}
	return o, false, nil
}

// keepOrigin keeps o for the client's next request, for at most originIdle
// (and idle_timeout).
func (cn *conn) keepOrigin(o *origin, idleTimeout time.Duration) {
	if o.br.Buffered() > 0 {
		cn.dropOrigin() // the origin sent more than its response
		return
	}
	d := originIdle
	if idleTimeout > 0 && idleTimeout < d {
		d = idleTimeout
	}
	o.idle(d)
}

// dropOrigin closes the client's origin, if it has one.
func (cn *conn) dropOrigin() {
	if o := cn.up.Swap(nil); o != nil {
		o.release()
	}
}
