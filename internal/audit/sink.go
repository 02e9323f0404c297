package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTLSConfig: a TLS option of a syslog+tls output cannot be used.
var ErrTLSConfig = errors.New("audit: syslog TLS configuration")

// Reconnect backoff of network sinks.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	// A connection that lived this long resets the backoff when it ends.
	stableAfter = 10 * time.Second
)

// streamSink writes newline-terminated records to a writer (stdout) or to an
// appended file that Reopen replaces.
type streamSink struct {
	mu      sync.Mutex // guards w, f, closed; held during a write
	w       io.Writer
	f       *os.File // file sink only
	closed  bool
	path    string
	buf     []byte // run goroutine only
	log     *slog.Logger
	failing bool // run goroutine only: last write failed
	// torn (run goroutine only): a failed write left part of a record (no
	// newline) at the end of the output, as a full disk does; the next
	// write starts with a newline, so that the fragment stays a line of its
	// own and the records after it are whole lines.
	torn bool
}

func newStreamSink(w io.Writer, log *slog.Logger) *streamSink {
	if w == nil {
		w = os.Stdout
	}
	return &streamSink{w: w, log: log}
}

// File permissions of a created event file: the events name users' destinations.
const filePerm = 0o640

func newFileSink(path string, log *slog.Logger) (*streamSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOutput, err)
	}
	return &streamSink{w: f, f: f, path: path, log: log}, nil
}

// write writes recs as lines and returns how many were not written whole
// (dropped). A write that fails part-way (a full disk, a reader gone)
// counts the records it wrote whole as written.
func (s *streamSink) write(_ context.Context, recs []*record) int {
	s.buf = s.buf[:0]
	lead := 0
	if s.torn {
		s.buf = append(s.buf, '\n')
		lead = 1
	}
	for _, r := range recs {
		s.buf = append(s.buf, r.b...)
		s.buf = append(s.buf, '\n')
	}
	s.mu.Lock()
	n, err := s.w.Write(s.buf)
	s.mu.Unlock()
	if cap(s.buf) > maxBatchBytes*2 {
		s.buf = nil
	}
	if err != nil {
		if !s.failing {
			s.log.Error("audit: cannot write events; dropping them until writes succeed", logKeyError, err)
		}
		s.failing = true
		if n <= 0 {
			return len(recs)
		}
		// n bytes went out: the newline that ended a fragment, then whole
		// records, then maybe part of one.
		s.torn = false
		whole, end := 0, lead
		for _, r := range recs {
			end += len(r.b) + 1
			if end > n {
				s.torn = end-len(r.b)-1 < n // some of its bytes went out
				break
			}
			whole++
		}
		return len(recs) - whole
	}
	s.torn = false
	if s.failing {
		s.log.Info("audit: writing events again")
		s.failing = false
	}
	return 0
}

func (s *streamSink) reopen() error {
	if s.f == nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, filePerm)
	if err != nil {
		return fmt.Errorf("audit: reopen %s: %w", s.path, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = f.Close()
		return ErrClosed
	}
	old := s.f
	s.f, s.w = f, f
	s.mu.Unlock()
	return old.Close()
}

func (s *streamSink) close() error {
	if s.f == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.f.Close()
}

// syslogSink sends RFC 5424 messages over UDP (one datagram each) or over TCP/TLS
// with RFC 6587 octet counting, reconnecting with capped exponential backoff.
type syslogSink struct {
	kind     outputKind
	addr     string
	dial     func(ctx context.Context) (net.Conn, error)
	hostname string
	procid   string
	log      *slog.Logger

	mu   sync.Mutex // guards conn for close() from another goroutine
	conn net.Conn
	dead chan struct{} // closed when the peer ended conn (TCP/TLS)

	// run goroutine only
	delay       time.Duration // wait before the next dial
	connectedAt time.Time
	failing     bool // UDP: last send failed; TCP/TLS: last dial failed
	buf         []byte
}

func newSyslogSink(out output, o *Options) (*syslogSink, error) {
	s := &syslogSink{
		kind:     out.kind,
		addr:     out.addr,
		hostname: syslogHostname(o.Hostname),
		procid:   strconv.Itoa(os.Getpid()),
		log:      o.Log,
	}
	nd := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	switch out.kind {
	case outSyslogUDP:
		s.dial = func(ctx context.Context) (net.Conn, error) { return nd.DialContext(ctx, "udp", out.addr) }
	case outSyslogTCP:
		s.dial = func(ctx context.Context) (net.Conn, error) { return nd.DialContext(ctx, "tcp", out.addr) }
	case outSyslogTLS:
		cfg, err := syslogTLSConfig(o, out.host)
		if err != nil {
			return nil, err
		}
		s.dial = func(ctx context.Context) (net.Conn, error) { return dialSyslogTLS(ctx, nd, cfg, out.addr) }
	}
	return s, nil
}

// tlsVerdictWait bounds how long a new TLS 1.3 connection waits for the
// receiver's verdict on egress's client certificate (see dialSyslogTLS).
const tlsVerdictWait = time.Second

// dialSyslogTLS connects and completes the TLS handshake. Under TLS 1.3 a
// receiver that asked for a client certificate checks it only after the
// handshake is complete on egress's side, and refuses it with an alert then:
// the first batch written would be lost without a trace. So when a
// certificate was asked for, the dial waits up to tlsVerdictWait for that
// alert; a refusal is a failed dial (logged, retried with backoff, the events
// stay queued), silence is acceptance.
func dialSyslogTLS(ctx context.Context, nd *net.Dialer, base *tls.Config, addr string) (net.Conn, error) {
	cfg := base.Clone()
	var asked atomic.Bool
	certs := cfg.Certificates
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		if len(certs) > 0 {
			return &certs[0], nil
		}
		return &tls.Certificate{}, nil // none: the receiver decides
	}
	td := &tls.Dialer{NetDialer: nd, Config: cfg}
	c, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if !asked.Load() || tc.ConnectionState().Version < tls.VersionTLS13 {
		return tc, nil
	}
	wait := tlsVerdictWait
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	_ = tc.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	_, rerr := tc.Read(b[:]) // a receiver sends no data: an alert, EOF or the timeout
	_ = tc.SetReadDeadline(time.Time{})
	var ne net.Error
	if rerr != nil && !(errors.As(rerr, &ne) && ne.Timeout()) {
		_ = tc.Close()
		return nil, fmt.Errorf("receiver ended the TLS session after the handshake (client certificate refused?): %w", rerr)
	}
	return tc, nil
}

// syslogTLSConfig builds the client configuration of a syslog+tls output.
func syslogTLSConfig(o *Options, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %w", ErrTLSConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrTLSConfig, o.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if o.TLSCertFile != "" || o.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrTLSConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	switch {
	case o.TLSServerName != "":
		cfg.ServerName = o.TLSServerName
	case cfg.ServerName == "":
		cfg.ServerName = host
	}
	return cfg, nil
}

// syslogHostname is h as an RFC 5424 HOSTNAME (PRINTUSASCII, at most 255
// bytes), "-" when unknown.
func syslogHostname(h string) string {
	if h == "" {
		return "-"
	}
	b := []byte(h)
	if len(b) > 255 {
		b = b[:255]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// appendHeader appends the RFC 5424 header of r, up to and including the space
// before MSG: "<PRI>1 TIMESTAMP HOSTNAME egress PROCID MSGID - ".
func (s *syslogSink) appendHeader(b []byte, r *record) []byte {
	t := r.t
	if t.IsZero() {
		t = time.Now()
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, syslogFacility*8+int64(r.sev), 10)
	b = append(b, '>', '1', ' ')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, s.hostname...)
	b = append(b, " egress "...)
	b = append(b, s.procid...)
	b = append(b, ' ')
	b = append(b, r.msgid...)
	return append(b, " - "...)
}

func (s *syslogSink) write(ctx context.Context, recs []*record) int {
	if s.kind == outSyslogUDP {
		return s.writeUDP(ctx, recs)
	}
	if s.conn != nil && s.peerGone() {
		s.disconnect(errors.New("connection closed by the receiver"), 0)
	}
	if s.conn == nil && !s.connect(ctx) {
		return len(recs)
	}
	s.buf = s.buf[:0]
	var hdr [128]byte
	for _, r := range recs {
		h := s.appendHeader(hdr[:0], r)
		s.buf = strconv.AppendInt(s.buf, int64(len(h)+len(r.b)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, h...)
		s.buf = append(s.buf, r.b...)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	// Close's flush time ending interrupts a write the receiver does not take.
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Now()) })
	_, err := conn.Write(s.buf)
	stop()
	if cap(s.buf) > maxBatchBytes*2 {
		s.buf = nil
	}
	if err != nil {
		s.disconnect(err, len(recs))
		return len(recs)
	}
	return 0
}

func (s *syslogSink) writeUDP(ctx context.Context, recs []*record) int {
	if s.conn == nil && !s.connect(ctx) {
		return len(recs)
	}
	lost := 0
	var firstErr error
	for _, r := range recs {
		s.buf = s.appendHeader(s.buf[:0], r)
		s.buf = append(s.buf, r.b...)
		if _, err := s.conn.Write(s.buf); err != nil {
			lost++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if cap(s.buf) > maxBatchBytes*2 {
		s.buf = nil
	}
	switch {
	case firstErr != nil && !s.failing:
		s.log.Warn("audit: syslog UDP send failed; dropping events until sends succeed", logKeyError, firstErr)
		s.failing = true
	case firstErr == nil && s.failing:
		s.log.Info("audit: syslog UDP sends succeed again")
		s.failing = false
	}
	return lost
}

// peerGone reports whether the watcher saw the receiver end the connection.
func (s *syslogSink) peerGone() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// connect dials until it succeeds or ctx is done, waiting the backoff delay
// before each attempt. It reports whether a connection is up.
func (s *syslogSink) connect(ctx context.Context) bool {
	for {
		if s.delay > 0 {
			t := time.NewTimer(s.delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
		c, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			s.delay = min(max(2*s.delay, backoffMin), backoffMax)
			s.log.Warn("audit: cannot connect to syslog receiver; events are queued, then dropped when the queue is full",
				logKeyError, err, logKeyRetryIn, s.delay)
			s.failing = true
			continue
		}
		dead := make(chan struct{})
		s.mu.Lock()
		s.conn, s.dead = c, dead
		s.mu.Unlock()
		s.connectedAt = time.Now()
		if s.kind != outSyslogUDP {
			go watchConn(c, dead)
		}
		if s.failing {
			s.log.Info("audit: connected to syslog receiver")
			s.failing = false
		}
		return true
	}
}

// watchConn reads (and discards) what the receiver sends until the connection
// ends, so that a receiver going away is noticed before the next write.
func watchConn(c net.Conn, dead chan<- struct{}) {
	_, _ = io.Copy(io.Discard, c)
	close(dead)
}

// disconnect closes the connection and sets the delay before the next dial: a
// connection that was stable reconnects at once, a flapping one backs off.
// lost is the number of events the failure lost, for the log.
func (s *syslogSink) disconnect(err error, lost int) {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	if time.Since(s.connectedAt) >= stableAfter {
		s.delay = 0
	} else {
		s.delay = min(max(2*s.delay, backoffMin), backoffMax)
	}
	s.log.Warn("audit: syslog connection lost; reconnecting", logKeyError, err, logKeyLost, lost, logKeyRetryIn, s.delay)
	s.failing = true
}

func (s *syslogSink) reopen() error { return nil }

func (s *syslogSink) close() error {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}
