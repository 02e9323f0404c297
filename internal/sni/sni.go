// Package sni owns reading and parsing the TLS ClientHello a client sends first on
// a connection: the explicit proxy reads it after answering CONNECT with 200, the
// transparent listener right after accept.
//
// Read reassembles one ClientHello handshake message across TCP segments and TLS
// records into one buffer that it owns until it returns it as raw: every byte it
// read, which the caller replays upstream unchanged. The buffer grows with what
// has arrived and is bounded in handshake size (MaxHelloSize), in bytes held
// (MaxRawBytes) and in records (MaxRecords), so a client that trickles a hello
// for hello_timeout holds at most MaxRawBytes of the proxy's memory. Parse checks
// the message the way crypto/tls does (golang.org/x/crypto/cryptobyte, one
// sub-string per vector, trailing bytes and duplicate extensions rejected) and
// extracts what the policy needs: the server name exactly as sent, ALPN,
// versions, whether ECH was offered, and the JA4 fingerprint. Names are not
// normalised here; that is the caller's job.
package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

// MaxHelloSize is the largest ClientHello handshake body (the value of the
// handshake message's 24-bit length field) that Read and Parse accept.
const MaxHelloSize = 16 << 10

// Limits on what one pending hello may hold. A client can keep a hello pending
// for hello_timeout, and an evasion tool may cut it into 1-byte records (six
// bytes on the wire per byte of hello), so the handshake size alone does not
// bound the reader's memory: these do.
const (
	// MaxRecords is the most TLS records a hello may span. Real stacks
	// (crypto/tls, BoringSSL, NSS, OpenSSL) send the hello in one record;
	// splitting it is an evasion technique, taken down to 1-byte records by
	// the most aggressive tools. 3072 records let a 3 KiB hello - a
	// post-quantum browser hello (about 1.9 KB) with half as much again to
	// spare - arrive one byte per record.
	MaxRecords = 3072
	// MaxRawBytes is the most bytes Read holds for one hello, record headers
	// included, and the most it reads: the records of the hello must end
	// within the first MaxRawBytes bytes of the stream. 24 KiB is a hello of
	// MaxHelloSize in records of 11 bytes or more (16388 bytes of handshake
	// plus 8 KiB of headers), or a 3 KiB hello in 1-byte records (18 KiB).
	MaxRawBytes = 24 << 10
)

// Record layer limits.
const (
	recordHeaderLen = 5
	// maxRecordLen is the largest record payload accepted: a plaintext record may
	// carry 2^14 bytes; the extra 256 is the slack crypto/tls allows on reads.
	maxRecordLen        = 16384 + 256
	recordTypeHandshake = 22
	typeClientHello     = 1
	handshakeHeaderLen  = 4
	// initialRawCap is the buffer a connection gets when its first read is
	// posted: a post-quantum browser hello (about 1.9 KB) in one read and one
	// allocation. Past it the buffer doubles when full, so its capacity is at
	// most twice what has arrived (and never above MaxRawBytes).
	initialRawCap = 2048
	// maxEmptyReads bounds reads that return no bytes and no error.
	maxEmptyReads = 100
)

// Sentinel errors. Test with errors.Is: ErrTooLarge and ErrDuplicateSNI are also
// ErrMalformed.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record (plain HTTP, an SSH
	// banner, an SSLv2-compatible hello, another record type, record major version
	// other than 3).
	ErrNotTLS = errors.New("sni: not a TLS handshake")
	// ErrMalformed: anything wrong in the records or the ClientHello.
	ErrMalformed = errors.New("sni: malformed client hello")
	// ErrTooLarge: the handshake message is longer than MaxHelloSize, or its
	// records are more than MaxRecords or end past MaxRawBytes.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrMalformed)
	// ErrDuplicateSNI: more than one server_name extension or host_name entry.
	ErrDuplicateSNI = fmt.Errorf("%w: more than one server name", ErrMalformed)
	// ErrTimeout: the read deadline set by the caller expired before the hello was
	// complete. The underlying error is wrapped too.
	ErrTimeout = errors.New("sni: timeout reading client hello")
	// ErrTruncated: the client closed (EOF) before the hello was complete.
	ErrTruncated = errors.New("sni: client hello truncated")
)

// Hello is what the proxy learns from a ClientHello.
type Hello struct {
	ServerName string   // host_name from the server_name extension exactly as sent ("" if absent)
	HasSNI     bool     // a host_name entry was present
	ALPN       []string // application_layer_protocol_negotiation protocols, in order
	Versions   []uint16 // supported_versions if present (GREASE removed), else the legacy version
	ECH        bool     // encrypted_client_hello extension (0xfe0d) present (real or GREASE)
	JA4        string   // JA4 fingerprint (FoxIO), "t" prefix for TCP
	Records    int      // number of TLS records the hello spanned (set by Read; 0 from Parse)
	RawLen     int      // bytes of raw the hello's records take, headers included (set by Read); raw[RawLen:] followed it

	// Inline backing storage so that a typical hello costs no extra allocations.
	versionsBuf [8]uint16
	alpnBuf     [3]string
}

// Read reads TLS records from r until one complete ClientHello handshake message
// has been received, reassembling it across reads and across handshake records
// (a record payload may be a single byte). It is ReadBuffered with nothing
// buffered.
func Read(r io.Reader) (h *Hello, raw []byte, err error) {
	return ReadBuffered(r, nil)
}

// ReadBuffered is Read on a stream whose first bytes, buffered, were already read
// from r by the caller (behind a CONNECT request, or a PROXY protocol header).
// ReadBuffered owns buffered from the call on: raw begins with it, possibly in
// the same array, and the caller must not use it again.
//
// It reads in chunks as large as its buffer allows, not record by record, so raw
// may go on past the hello: raw is every byte of the stream it holds, the hello
// first (h.RawLen bytes) and then whatever the client sent after it, in order,
// for the caller to replay upstream unchanged. raw is returned on error too. It
// reads nothing once the hello is complete, never grows raw beyond MaxRawBytes
// (or len(buffered), if longer), and refuses a hello whose records are more than
// MaxRecords or end past MaxRawBytes as soon as the offending record header
// arrives.
//
// Errors: ErrNotTLS, ErrMalformed (and ErrTooLarge, ErrDuplicateSNI), ErrTimeout
// when r's read deadline expires, ErrTruncated on EOF; any other read error is
// wrapped as is.
func ReadBuffered(r io.Reader, buffered []byte) (h *Hello, raw []byte, err error) {
	// The caller's spare capacity is used too, but no more than MaxRawBytes.
	rr := recordReader{r: r, raw: buffered[:len(buffered):min(cap(buffered), max(len(buffered), MaxRawBytes))]}
	if err := rr.readHello(); err != nil {
		return nil, rr.raw, err
	}
	h = new(Hello)
	if err := rr.parse(h); err != nil {
		return nil, rr.raw, err
	}
	h.Records, h.RawLen = rr.records, rr.pos
	return h, rr.raw, nil
}

// recordReader scans the records of one hello in raw as the bytes arrive; raw
// is the only copy of them.
type recordReader struct {
	r       io.Reader
	raw     []byte
	pos     int // raw[:pos] is scanned
	recEnd  int // end in raw of the record being scanned; 0 between records
	records int
	done    bool // the hello is complete and ends at pos

	hsHeader [handshakeHeaderLen]byte
	hsSeen   int // handshake bytes received so far, across records
	hsTotal  int // header plus body length, once the header is known; 0 before
}

// readHello reads until the hello's last record is complete.
func (rr *recordReader) readHello() error {
	empty := 0
	for {
		if err := rr.scan(); err != nil || rr.done {
			return err
		}
		if len(rr.raw) == cap(rr.raw) {
			if len(rr.raw) >= MaxRawBytes {
				// Only a partial record header is left unscanned: the record it
				// starts cannot end within MaxRawBytes.
				return fmt.Errorf("%w: records take more than %d bytes", ErrTooLarge, MaxRawBytes)
			}
			rr.grow()
		}
		free := rr.raw[len(rr.raw):cap(rr.raw)]
		m, err := rr.r.Read(free)
		if m < 0 || m > len(free) {
			m, err = 0, io.ErrShortBuffer
		}
		rr.raw = rr.raw[:len(rr.raw)+m]
		if m > 0 {
			empty = 0
			// Bytes that came with an error are scanned first: they may
			// complete the hello, or show it is malformed.
			if serr := rr.scan(); serr != nil || rr.done {
				return serr
			}
		}
		if err != nil {
			return rr.readError(err)
		}
		if m == 0 {
			if empty++; empty >= maxEmptyReads {
				return fmt.Errorf("sni: reading client hello: %w", io.ErrNoProgress)
			}
		}
	}
}

// grow doubles raw's capacity (initialRawCap at first), up to MaxRawBytes: the
// buffer grows by what has arrived, never by what a record header announces.
func (rr *recordReader) grow() {
	n := min(max(2*cap(rr.raw), initialRawCap), MaxRawBytes)
	grown := make([]byte, len(rr.raw), n)
	copy(grown, rr.raw)
	rr.raw = grown
}

// scan checks the bytes of raw not scanned yet, record header by record header,
// so that a bad hello is refused as soon as the offending byte arrives.
func (rr *recordReader) scan() error {
	for rr.pos < len(rr.raw) && !rr.done {
		if rr.recEnd == 0 {
			hdr := rr.raw[rr.pos:min(len(rr.raw), rr.pos+recordHeaderLen)]
			if err := rr.checkHeader(hdr); err != nil {
				return err
			}
			if len(hdr) < recordHeaderLen {
				return nil
			}
			n := int(hdr[3])<<8 | int(hdr[4])
			switch {
			case n == 0 || n > maxRecordLen:
				return fmt.Errorf("%w: record length %d", ErrMalformed, n)
			case rr.records == MaxRecords:
				return fmt.Errorf("%w: more than %d records", ErrTooLarge, MaxRecords)
			case rr.pos+recordHeaderLen+n > MaxRawBytes:
				return fmt.Errorf("%w: records take more than %d bytes", ErrTooLarge, MaxRawBytes)
			}
			rr.records++
			rr.pos += recordHeaderLen
			rr.recEnd = rr.pos + n
			continue
		}
		end := min(len(rr.raw), rr.recEnd)
		if err := rr.consume(rr.raw[rr.pos:end]); err != nil {
			return err
		}
		rr.pos = end
		if rr.pos == rr.recEnd {
			rr.recEnd = 0
			rr.done = rr.hsTotal != 0 && rr.hsSeen == rr.hsTotal
		}
	}
	return nil
}

// checkHeader validates the bytes of a record header received so far.
func (rr *recordReader) checkHeader(h []byte) error {
	first := rr.records == 0
	if len(h) >= 1 && h[0] != recordTypeHandshake {
		if first {
			return ErrNotTLS
		}
		return fmt.Errorf("%w: record type %d inside the hello", ErrMalformed, h[0])
	}
	if len(h) >= 2 && h[1] != 3 {
		if first {
			return ErrNotTLS
		}
		return fmt.Errorf("%w: record version major %d", ErrMalformed, h[1])
	}
	return nil
}

// consume accounts for handshake bytes as they arrive.
func (rr *recordReader) consume(b []byte) error {
	for len(b) > 0 && rr.hsSeen < handshakeHeaderLen {
		rr.hsHeader[rr.hsSeen] = b[0]
		rr.hsSeen++
		b = b[1:]
		if rr.hsSeen == 1 && rr.hsHeader[0] != typeClientHello {
			return fmt.Errorf("%w: handshake type %d, want client_hello", ErrMalformed, rr.hsHeader[0])
		}
		if rr.hsSeen == handshakeHeaderLen {
			l := int(rr.hsHeader[1])<<16 | int(rr.hsHeader[2])<<8 | int(rr.hsHeader[3])
			if l > MaxHelloSize {
				return fmt.Errorf("%w: handshake message of %d bytes, limit %d", ErrTooLarge, l, MaxHelloSize)
			}
			rr.hsTotal = handshakeHeaderLen + l
		}
	}
	rr.hsSeen += len(b)
	if rr.hsTotal != 0 && rr.hsSeen > rr.hsTotal {
		return fmt.Errorf("%w: data after the client hello", ErrMalformed)
	}
	return nil
}

// msgPool holds buffers for reassembling a hello that spans several records.
// Parsing copies everything a Hello keeps (its strings share one allocation of
// their own), so a buffer goes back to the pool as soon as parse returns.
var msgPool = sync.Pool{New: func() any {
	b := make([]byte, handshakeHeaderLen+MaxHelloSize)
	return &b
}}

// parse parses the complete hello into h. A hello in one record is parsed in
// place in raw; one that spans several is copied into a pooled buffer for the
// parse only, so that a pending hello never holds a second copy.
func (rr *recordReader) parse(h *Hello) error {
	if rr.records == 1 {
		return h.parse(rr.raw[recordHeaderLen:rr.pos], ja4TCP)
	}
	bp := msgPool.Get().(*[]byte)
	defer msgPool.Put(bp)
	msg := (*bp)[:0]
	for off := 0; off < rr.pos; {
		n := int(rr.raw[off+3])<<8 | int(rr.raw[off+4])
		msg = append(msg, rr.raw[off+recordHeaderLen:off+recordHeaderLen+n]...)
		off += recordHeaderLen + n
	}
	return h.parse(msg, ja4TCP)
}

// readError maps a read error to the package's sentinels.
func (rr *recordReader) readError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if len(rr.raw) == 0 {
			return fmt.Errorf("%w: connection closed before any data", ErrTruncated)
		}
		return ErrTruncated
	default:
		return fmt.Errorf("sni: reading client hello: %w", err)
	}
}
