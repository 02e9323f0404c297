package audit

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultQueueSize    = 65536            // events
	DefaultQueueBytes   = 64 << 20         // bytes of encoded events
	DefaultFlushTimeout = 2 * time.Second  // Close
	maxBatch            = 256              // records per sink write
	maxBatchBytes       = 256 << 10        // bytes per sink write
	maxPooledBuf        = 64 << 10         // larger record buffers are not pooled
	writeTimeout        = 10 * time.Second // one write to a network sink
	dialTimeout         = 10 * time.Second // one connection attempt, TLS handshake included
	closeGrace          = time.Second      // beyond FlushTimeout, for a write in progress

	// linger is how long the writer lets events gather after a write
	// before it looks at the queue again. While it lingers nobody waits on
	// the queue, so Log wakes no goroutine (and no thread): at a thousand
	// events a second the writer wakes ~200 times instead of a thousand,
	// and writes several events at once. An event reaches the sink at most
	// this much later; a queue half full cuts the linger short.
	linger = 5 * time.Millisecond
)

// Keys of the process log records this package writes.
const (
	logKeyOutput  = "output"
	logKeyError   = "error"
	logKeyRetryIn = "retry_in"
	logKeyLost    = "lost_events"
)

// Options configure a Logger.
type Options struct {
	Format  string // ecs | cef
	Output  string // stdout | file:PATH | syslog+udp://h:p | syslog+tcp://h:p | syslog+tls://h:p
	Version string // product version (observer.version, CEF header)
	// Hostname names this replica in every event (observer.hostname, CEF
	// dvchost) and in the syslog header; "" = os.Hostname().
	Hostname string
	// LegacyFields also writes the 1.x names of renamed fields (see
	// EncoderOptions.LegacyFields).
	LegacyFields bool

	QueueSize  int // events queued between traffic and the sink; 0 = DefaultQueueSize
	QueueBytes int // bound on the encoded bytes queued; 0 = DefaultQueueBytes

	OnDrop func()       // called once per dropped event (may be nil); must be cheap and non-blocking
	Log    *slog.Logger // process log for sink errors and reconnects (nil = discard)

	// syslog+tls: TLSConfig is the base configuration (nil = system roots, TLS 1.2+).
	// TLSCAFile (PEM) replaces its RootCAs; TLSCertFile/TLSKeyFile add a client
	// certificate; TLSServerName overrides the name verified (default: the host of
	// the output URL, or TLSConfig.ServerName when set).
	TLSConfig     *tls.Config
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string

	Stdout       io.Writer     // destination of "stdout" (nil = os.Stdout)
	FlushTimeout time.Duration // how long Close may spend delivering the queue; 0 = DefaultFlushTimeout
}

// record is one encoded event on its way to the sink.
type record struct {
	b     []byte
	t     time.Time // event time, for the syslog header
	sev   byte      // syslog severity
	msgid string    // syslog MSGID
}

var recordPool = sync.Pool{New: func() any { return &record{b: make([]byte, 0, 1024)} }}

func putRecord(r *record) {
	if cap(r.b) > maxPooledBuf {
		r.b = nil
	}
	r.b = r.b[:0]
	recordPool.Put(r)
}

// sink delivers batches of records. write returns how many of recs were lost;
// it may block (reconnecting) until ctx is done. Only the Logger's run goroutine
// calls write; reopen and close may be called from others.
type sink interface {
	write(ctx context.Context, recs []*record) (lost int)
	reopen() error
	close() error
}

// Logger ships events to one sink through a bounded queue. Log never blocks.
type Logger struct {
	enc      Encoder
	sink     sink
	q        chan *record
	qBytes   atomic.Int64
	maxBytes int64
	dropped  atomic.Uint64
	onDrop   func()
	log      *slog.Logger

	closed    atomic.Bool
	stop      chan struct{}      // closed by Close: drain and exit
	hurry     chan struct{}      // the queue is half full: end the linger
	done      chan struct{}      // closed by run on exit
	ctx       context.Context    // cancelled when the flush time is over
	cancel    context.CancelFunc //
	flushTime time.Duration
	closeOnce sync.Once
	closeErr  error
}

// New validates o, opens the sink (a file is opened at once; a network sink
// connects in the background, so an absent SIEM does not stop the start) and
// starts the delivery goroutine.
func New(o Options) (*Logger, error) {
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	enc, err := NewEncoderWith(EncoderOptions{Format: o.Format, Version: o.Version, Hostname: o.Hostname,
		LegacyFields: o.LegacyFields})
	if err != nil {
		return nil, err
	}
	out, err := parseOutput(o.Output)
	if err != nil {
		return nil, err
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = DefaultFlushTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Log = o.Log.With(logKeyOutput, o.Output) // no secrets: userinfo is refused
	s, err := newSink(out, &o)
	if err != nil {
		return nil, err
	}
	l := &Logger{
		enc:       enc,
		sink:      s,
		q:         make(chan *record, o.QueueSize),
		maxBytes:  int64(o.QueueBytes),
		onDrop:    o.OnDrop,
		log:       o.Log,
		stop:      make(chan struct{}),
		hurry:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		flushTime: o.FlushTimeout,
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l, nil
}

// Log encodes e on the caller's goroutine and queues it; it never blocks. When
// the queue is full (by count or by bytes) or the Logger is closed, the event is
// dropped and counted (Dropped, OnDrop). Log does not retain e or anything it
// points to after it returns. An event without ID gets NewID(); one without Time
// gets the current time.
func (l *Logger) Log(e *Event) {
	if l.closed.Load() || len(l.q) == cap(l.q) {
		l.drop(1)
		return
	}
	if e.ID == "" {
		c := *e
		c.ID = NewID()
		e = &c
	}
	r := recordPool.Get().(*record)
	r.b = l.enc.Encode(r.b[:0], e)
	r.t = e.Time
	r.sev, r.msgid = syslogSeverity(e.Action)
	n := int64(len(r.b))
	if l.qBytes.Add(n) > l.maxBytes {
		l.qBytes.Add(-n)
		putRecord(r)
		l.drop(1)
		return
	}
	select {
	case l.q <- r:
		if len(l.q) > cap(l.q)/2 {
			select {
			case l.hurry <- struct{}{}:
			default:
			}
		}
	default:
		l.qBytes.Add(-n)
		putRecord(r)
		l.drop(1)
	}
}

// Queued is the number of events waiting for the sink.
func (l *Logger) Queued() int { return len(l.q) }

// Capacity is the queue's size in events.
func (l *Logger) Capacity() int { return cap(l.q) }

// Dropped is the number of events dropped so far (queue full, sink failure,
// closed).
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Reopen reopens the file of a "file:" output (after logrotate moved it; call on
// SIGHUP). For other outputs it does nothing.
func (l *Logger) Reopen() error { return l.sink.reopen() }

// Close stops accepting events, delivers what is queued for at most the flush
// timeout (counting the rest as dropped), stops the goroutines and closes the
// sink. It is safe to call more than once. When a write to stdout or a file is
// still blocked a second after the flush timeout, Close returns ErrFlushTimeout
// without waiting for it.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		t := time.AfterFunc(l.flushTime, l.cancel)
		defer t.Stop()
		select {
		case <-l.done:
		case <-time.After(l.flushTime + closeGrace):
			// A stdout or file write the kernel does not finish: leave the
			// goroutine to it rather than hang the process's shutdown.
			l.closeErr = ErrFlushTimeout
			return
		}
		l.cancel()
		// Events that raced with Close into the queue after run left.
		for {
			select {
			case r := <-l.q:
				l.release(r)
				l.drop(1)
				continue
			default:
			}
			break
		}
		l.closeErr = l.sink.close()
	})
	return l.closeErr
}

func (l *Logger) drop(n int) {
	if n <= 0 {
		return
	}
	l.dropped.Add(uint64(n))
	if l.onDrop != nil {
		for range n {
			l.onDrop()
		}
	}
}

func (l *Logger) release(r *record) {
	l.qBytes.Add(-int64(len(r.b)))
	putRecord(r)
}

// run is the delivery goroutine: it takes batches off the queue and writes them
// to the sink until Close, then drains the queue within the flush timeout.
func (l *Logger) run() {
	defer close(l.done)
	batch := make([]*record, 0, maxBatch)
	wait := time.NewTimer(linger)
	wait.Stop()
	for {
		select {
		case r := <-l.q:
			batch = l.fill(append(batch[:0], r))
			l.send(batch)
			if len(l.q) > 0 {
				continue // more queued already: no wake-up to save
			}
			wait.Reset(linger)
			select {
			case <-wait.C:
				continue
			case <-l.hurry:
				wait.Stop()
				continue
			case <-l.stop:
				wait.Stop()
			}
		case <-l.stop:
		}
		for {
			batch = l.fill(batch[:0])
			if len(batch) == 0 {
				return
			}
			l.send(batch)
		}
	}
}

// fill adds queued records to batch without waiting, within the batch bounds.
func (l *Logger) fill(batch []*record) []*record {
	size := 0
	for _, r := range batch {
		size += len(r.b)
	}
	for len(batch) < maxBatch && size < maxBatchBytes {
		select {
		case r := <-l.q:
			batch = append(batch, r)
			size += len(r.b)
		default:
			return batch
		}
	}
	return batch
}

func (l *Logger) send(batch []*record) {
	lost := 0
	if l.ctx.Err() != nil {
		lost = len(batch)
	} else {
		lost = l.sink.write(l.ctx, batch)
	}
	l.drop(lost)
	for i, r := range batch {
		l.release(r)
		batch[i] = nil
	}
}

// Syslog severities (RFC 5424) and the facility local0.
const (
	syslogFacility      = 16 // local0
	syslogSevWarning    = 4
	syslogSevNotice     = 5
	syslogSevInfo       = 6
	syslogMsgIDDecision = "decision"
)

// syslogSeverity maps an action to the syslog severity and MSGID.
func syslogSeverity(action string) (byte, string) {
	switch action {
	case ActionDeny:
		return syslogSevWarning, ActionDeny
	case ActionAllow:
		return syslogSevInfo, ActionAllow
	}
	return syslogSevNotice, syslogMsgIDDecision
}

// newSink builds the sink of out.
func newSink(out output, o *Options) (sink, error) {
	switch out.kind {
	case outStdout:
		return newStreamSink(o.Stdout, o.Log), nil
	case outFile:
		return newFileSink(out.path, o.Log)
	case outSyslogUDP, outSyslogTCP, outSyslogTLS:
		return newSyslogSink(out, o)
	}
	return nil, fmt.Errorf("%w: kind %d", ErrOutput, out.kind)
}
