// Package sni owns reading and parsing the TLS ClientHello a client sends first on
// a connection: the explicit proxy reads it after answering CONNECT with 200, the
// transparent listener right after accept.
//
// Read reassembles one ClientHello handshake message across TCP segments and TLS
// records, bounded in size (MaxHelloSize) and never reading a byte past the record
// that completes it, and returns every byte it consumed so the caller can replay
// them upstream unchanged. Parse checks the message the way crypto/tls does
// (golang.org/x/crypto/cryptobyte, one sub-string per vector, trailing bytes and
// duplicate extensions rejected) and extracts what the policy needs: the server
// name exactly as sent, ALPN, versions, whether ECH was offered, and the JA4
// fingerprint. Names are not normalised here; that is the caller's job.
package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// MaxHelloSize is the largest ClientHello handshake body (the value of the
// handshake message's 24-bit length field) that Read and Parse accept.
const MaxHelloSize = 16 << 10

// Record layer limits.
const (
	recordHeaderLen = 5
	// maxRecordLen is the largest record payload accepted: a plaintext record may
	// carry 2^14 bytes; the extra 256 is the slack crypto/tls allows on reads.
	maxRecordLen        = 16384 + 256
	recordTypeHandshake = 22
	typeClientHello     = 1
	handshakeHeaderLen  = 4
	// initialRawCap covers a post-quantum browser hello (about 1.9 KB) in one
	// allocation.
	initialRawCap = 2560
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
	// ErrTooLarge: the handshake message is longer than MaxHelloSize.
	ErrTooLarge = fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxHelloSize)
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

	// Inline backing storage so that a typical hello costs no extra allocations.
	versionsBuf [8]uint16
	alpnBuf     [3]string
}

// Read reads TLS records from r until one complete ClientHello handshake message has
// been received, reassembling it across reads and across handshake records (a record
// payload may be a single byte). It returns the parsed hello and raw, every byte it
// consumed from r, record headers included; raw is returned on error too. Read never
// reads past the end of the record that completes the hello.
//
// Errors: ErrNotTLS, ErrMalformed (and ErrTooLarge, ErrDuplicateSNI), ErrTimeout when
// r's read deadline expires, ErrTruncated on EOF; any other read error is wrapped as
// is.
func Read(r io.Reader) (h *Hello, raw []byte, err error) {
	rr := recordReader{r: r, raw: make([]byte, 0, initialRawCap)}
	msg, err := rr.readMessage()
	if err != nil {
		return nil, rr.raw, err
	}
	h = new(Hello)
	if err := h.parse(msg); err != nil {
		return nil, rr.raw, err
	}
	h.Records = rr.records
	return h, rr.raw, nil
}

// recordReader reassembles one handshake message from TLS records, appending every
// byte read to raw.
type recordReader struct {
	r       io.Reader
	raw     []byte
	records int

	hsHeader [handshakeHeaderLen]byte
	hsSeen   int    // handshake bytes received so far, across records
	hsTotal  int    // header plus body length, once the header is known; 0 before
	multi    []byte // the message reassembled, once it spans more than one record
}

// readMessage returns the complete handshake message (header included). The slice
// aliases raw when the message came in one record.
func (rr *recordReader) readMessage() ([]byte, error) {
	for {
		off := len(rr.raw)
		if err := rr.fill(recordHeaderLen, -1); err != nil {
			return nil, err
		}
		hdr := rr.raw[off : off+recordHeaderLen]
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecordLen {
			return nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
		}
		rr.records++
		if err := rr.fill(n, off+recordHeaderLen); err != nil {
			return nil, err
		}
		payload := rr.raw[off+recordHeaderLen : off+recordHeaderLen+n]
		done := rr.hsTotal != 0 && rr.hsSeen == rr.hsTotal
		if rr.records == 1 && done {
			return payload, nil
		}
		if rr.multi == nil {
			size := rr.hsTotal
			if size < len(payload)+handshakeHeaderLen {
				size = len(payload) + handshakeHeaderLen
			}
			rr.multi = make([]byte, 0, size)
		}
		rr.multi = append(rr.multi, payload...)
		if done {
			return rr.multi, nil
		}
	}
}

// fill reads exactly n more bytes into raw. payloadOff < 0 means a record header is
// being read; otherwise the bytes are record payload starting at raw[payloadOff].
// Bytes are checked as they arrive, so that a bad hello is refused without waiting
// for the rest of it.
func (rr *recordReader) fill(n int, payloadOff int) error {
	start := len(rr.raw)
	if cap(rr.raw)-start < n {
		grown := make([]byte, start, 2*cap(rr.raw)+n)
		copy(grown, rr.raw)
		rr.raw = grown
	}
	buf := rr.raw[start : start+n]
	got, empty := 0, 0
	for got < n {
		m, err := rr.r.Read(buf[got:])
		if m < 0 || m > n-got {
			m = 0
			err = io.ErrShortBuffer
		}
		if m > 0 {
			empty = 0
			var cerr error
			if payloadOff < 0 {
				cerr = rr.checkHeader(buf[:got+m], got)
			} else {
				cerr = rr.consume(buf[got : got+m])
			}
			got += m
			rr.raw = rr.raw[:start+got]
			if cerr != nil {
				return cerr
			}
		}
		if got == n {
			return nil
		}
		if err != nil {
			return rr.readError(err, got)
		}
		if m == 0 {
			if empty++; empty >= maxEmptyReads {
				return fmt.Errorf("sni: reading client hello: %w", io.ErrNoProgress)
			}
		}
	}
	return nil
}

// checkHeader validates the record header bytes received so far; from is the
// number already checked.
func (rr *recordReader) checkHeader(h []byte, from int) error {
	first := rr.records == 0
	if from < 1 && len(h) >= 1 && h[0] != recordTypeHandshake {
		if first {
			return ErrNotTLS
		}
		return fmt.Errorf("%w: record type %d inside the hello", ErrMalformed, h[0])
	}
	if from < 2 && len(h) >= 2 && h[1] != 3 {
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
				return ErrTooLarge
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

// readError maps a read error to the package's sentinels. got is how many bytes of
// the current fill had arrived.
func (rr *recordReader) readError(err error, got int) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if len(rr.raw) == 0 && got == 0 {
			return fmt.Errorf("%w: connection closed before any data", ErrTruncated)
		}
		return ErrTruncated
	default:
		return fmt.Errorf("sni: reading client hello: %w", err)
	}
}
