package quicinitial

import (
	"errors"
	"fmt"
)

// MaxHello is the longest ClientHello handshake message (4-byte header and
// body) a Collector accepts: sni.MaxHelloSize plus the header.
const MaxHello = 16<<10 + 4

// MaxRanges bounds the disjoint pieces of the CRYPTO stream a Collector holds
// at once. Browsers cut the hello into a handful of frames and send them out
// of order; a client that leaves more holes than this is refused rather than
// making every later frame walk a long list.
const MaxRanges = 64

// Frame types that may appear in a client's Initial packet (RFC 9000 §12.4).
const (
	framePadding         = 0x00
	framePing            = 0x01
	frameAck             = 0x02
	frameAckECN          = 0x03
	frameCrypto          = 0x06
	frameConnectionClose = 0x1c
)

// ErrClosed: the client closed the connection (a CONNECTION_CLOSE frame in
// its Initial).
var ErrClosed = fmt.Errorf("%w: client sent CONNECTION_CLOSE", ErrMalformed)

// Collector reassembles the ClientHello from the CRYPTO frames of a client's
// Initial packets, in offset order whatever order they arrive in, with
// duplicates and overlaps (which must carry the same bytes) and PING,
// PADDING and ACK frames between them. It holds at most MaxHello bytes and
// MaxRanges pieces. Its zero value is ready to use; it is not safe for
// concurrent use.
type Collector struct {
	buf    []byte // the stream from offset 0; grows to the highest end received
	ranges []span // received pieces, sorted, disjoint and not adjacent
	total  int    // length of the hello message once its header is in; 0 before
	Frames int    // CRYPTO frames received, duplicates included
}

type span struct{ start, end int }

// AddPayload parses the frames of one decrypted Initial packet and adds the
// CRYPTO data.
func (c *Collector) AddPayload(p []byte) error {
	return walkFrames(p, c.add)
}

// ErrOtherHello: CRYPTO data that is not the ClientHello the flow was
// decided on.
var ErrOtherHello = errors.New("quic: crypto data of another client hello")

// MatchHello checks that every CRYPTO frame in the frames of a decrypted
// Initial packet carries bytes of hello (the handshake message the flow was
// decided on) at their offsets: a retransmission of it, or no CRYPTO at all
// (ACK, PING, PADDING, CONNECTION_CLOSE). Anything else is another hello
// (ErrOtherHello) or malformed.
func MatchHello(p, hello []byte) error {
	err := walkFrames(p, func(off int, data []byte) error {
		if off+len(data) > len(hello) || string(hello[off:off+len(data)]) != string(data) {
			return ErrOtherHello
		}
		return nil
	})
	if errors.Is(err, ErrClosed) {
		return nil // the client gives up: the server must hear it
	}
	return err
}

// walkFrames parses the frames of a client Initial packet and calls crypto
// with each CRYPTO frame's offset and data (which alias p).
func walkFrames(p []byte, crypto func(off int, data []byte) error) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: packet without frames", ErrMalformed)
	}
	for len(p) > 0 {
		typ := p[0]
		switch typ {
		case framePadding, framePing:
			p = p[1:]
		case frameAck, frameAckECN:
			var err error
			if p, err = skipAck(p[1:], typ == frameAckECN); err != nil {
				return err
			}
		case frameCrypto:
			off, l1 := readVarint(p[1:])
			if l1 == 0 {
				return fmt.Errorf("%w: truncated CRYPTO frame", ErrMalformed)
			}
			n, l2 := readVarint(p[1+l1:])
			hdr := 1 + l1 + l2
			if l2 == 0 || n > uint64(len(p)-hdr) {
				return fmt.Errorf("%w: truncated CRYPTO frame", ErrMalformed)
			}
			if off > MaxHello || off+n > MaxHello {
				return fmt.Errorf("%w: CRYPTO data at offset %d+%d", ErrTooLarge, off, n)
			}
			if err := crypto(int(off), p[hdr:hdr+int(n)]); err != nil {
				return err
			}
			p = p[hdr+int(n):]
		case frameConnectionClose:
			return ErrClosed
		default:
			// Varint-encoded frame types: anything else is not allowed in
			// an Initial packet (RFC 9000 §12.4).
			return fmt.Errorf("%w: frame type %#x in an Initial packet", ErrMalformed, typ)
		}
	}
	return nil
}

// skipAck skips an ACK frame's fields after its type.
func skipAck(p []byte, ecn bool) ([]byte, error) {
	read := func() (uint64, bool) {
		v, l := readVarint(p)
		if l == 0 {
			return 0, false
		}
		p = p[l:]
		return v, true
	}
	_, ok1 := read() // largest acknowledged
	_, ok2 := read() // ack delay
	count, ok3 := read()
	_, ok4 := read() // first range
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("%w: truncated ACK frame", ErrMalformed)
	}
	if count > uint64(len(p)) { // every range takes at least two bytes
		return nil, fmt.Errorf("%w: ACK frame with %d ranges", ErrMalformed, count)
	}
	for i := uint64(0); i < count; i++ {
		_, okGap := read()
		_, okLen := read()
		if !okGap || !okLen {
			return nil, fmt.Errorf("%w: truncated ACK frame", ErrMalformed)
		}
	}
	if ecn {
		for range 3 {
			if _, ok := read(); !ok {
				return nil, fmt.Errorf("%w: truncated ACK frame", ErrMalformed)
			}
		}
	}
	return p, nil
}

// add stores data at off. Bytes already received must match.
func (c *Collector) add(off int, data []byte) error {
	c.Frames++
	if len(data) == 0 {
		return nil
	}
	end := off + len(data)
	if c.total > 0 && end > c.total {
		return fmt.Errorf("%w: CRYPTO data past the end of the client hello", ErrMalformed)
	}
	if end > len(c.buf) {
		if end > cap(c.buf) {
			nb := make([]byte, end, max(end, min(2*cap(c.buf), MaxHello)))
			copy(nb, c.buf)
			c.buf = nb
		}
		c.buf = c.buf[:end]
	}
	// Overlaps with what is in must be identical: a client that sends two
	// versions of the same bytes must not get one read by the proxy and the
	// other by the server.
	for _, r := range c.ranges {
		lo, hi := max(r.start, off), min(r.end, end)
		if lo < hi && string(c.buf[lo:hi]) != string(data[lo-off:hi-off]) {
			return fmt.Errorf("%w: CRYPTO frames disagree at offset %d", ErrMalformed, lo)
		}
	}
	copy(c.buf[off:end], data)
	c.insert(span{off, end})
	if len(c.ranges) > MaxRanges {
		return fmt.Errorf("%w: CRYPTO stream in more than %d pieces", ErrTooLarge, MaxRanges)
	}
	if c.total == 0 && len(c.ranges) > 0 && c.ranges[0].start == 0 && c.ranges[0].end >= 4 {
		n := 4 + (int(c.buf[1])<<16 | int(c.buf[2])<<8 | int(c.buf[3]))
		if n > MaxHello {
			return fmt.Errorf("%w: client hello of %d bytes", ErrTooLarge, n-4)
		}
		if c.ranges[len(c.ranges)-1].end > n {
			return fmt.Errorf("%w: CRYPTO data past the end of the client hello", ErrMalformed)
		}
		c.total = n
	}
	return nil
}

// insert merges s into the sorted ranges.
func (c *Collector) insert(s span) {
	out := c.ranges[:0:0]
	placed := false
	for _, r := range c.ranges {
		switch {
		case r.end < s.start:
			out = append(out, r)
		case s.end < r.start:
			if !placed {
				out = append(out, s)
				placed = true
			}
			out = append(out, r)
		default: // overlapping or adjacent: absorb
			s.start, s.end = min(s.start, r.start), max(s.end, r.end)
		}
	}
	if !placed {
		out = append(out, s)
	}
	c.ranges = out
}

// Hello returns the complete ClientHello handshake message (header and body),
// or nil while pieces are missing. It aliases the Collector's buffer.
func (c *Collector) Hello() []byte {
	if c.total == 0 || len(c.ranges) != 1 || c.ranges[0].start != 0 || c.ranges[0].end < c.total {
		return nil
	}
	return c.buf[:c.total]
}

// Received is how many bytes of the stream have arrived (without holes).
func (c *Collector) Received() int {
	n := 0
	for _, r := range c.ranges {
		n += r.end - r.start
	}
	return n
}
