// Package quicinitial owns reading a QUIC client's Initial packets: the long
// header, the removal of header protection and the AEAD decryption with the
// Initial keys every observer can derive from the Destination Connection ID
// (RFC 9001 §5 for QUIC v1, RFC 9369 §3 for QUIC v2), the reassembly of the
// CRYPTO frames that carry the ClientHello (Collector), and the one packet a
// proxy sends back to a denied client: a server Initial carrying a
// CONNECTION_CLOSE (AppendClose).
//
// Nothing here is secret: the Initial keys are derived from public salts and
// the connection ID in the clear, which is why a proxy can read the ClientHello
// of a QUIC connection exactly as it reads one on TCP. The ClientHello itself
// is parsed by internal/sni.
//
// quic-go cannot be reused for this: its Initial AEAD, header protection and
// frame parsing live in internal/ packages of its module (which Go forbids
// importing from elsewhere), and its public API is a whole QUIC endpoint that
// terminates connections rather than a parser of someone else's packets.
// The code below is a few dozen lines over crypto/aes, crypto/cipher and
// crypto/hkdf.
//
// Every function here works on bytes the caller owns and never keeps them:
// Opener decrypts into its own scratch buffer, which the payload it returns
// aliases until the next call.
package quicinitial

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// QUIC versions whose Initial packets can be read.
const (
	Version1 uint32 = 0x00000001 // RFC 9000
	Version2 uint32 = 0x6b3343cf // RFC 9369
)

// MinDatagram is the smallest UDP payload that may carry a client's Initial
// packet (RFC 9000 §14.1): a server discards anything shorter, and so does the
// proxy. It also bounds amplification: whatever the proxy answers to a new
// flow is far below three times this.
const MinDatagram = 1200

// Limits of the header (RFC 9000 §17.2).
const (
	maxConnIDLen = 20
	// minClientDCIDLen: a client's first Destination Connection ID is at
	// least 8 bytes (RFC 9000 §7.2).
	minClientDCIDLen = 8
	tagLen           = 16 // AES-128-GCM
	sampleLen        = 16
	maxPNLen         = 4
)

// Sentinel errors. ErrAuth and ErrTooLarge are also ErrMalformed.
var (
	// ErrNotInitial: the datagram does not begin with a long-header Initial
	// packet (a short header, another packet type, a Version Negotiation).
	ErrNotInitial = errors.New("quic: not an initial packet")
	// ErrVersion: a long header of a version this package cannot read.
	ErrVersion = errors.New("quic: unknown version")
	// ErrMalformed: anything wrong in a header, a frame or the CRYPTO stream.
	ErrMalformed = errors.New("quic: malformed initial")
	// ErrAuth: the packet did not decrypt (a forgery, a corrupted packet,
	// or one protected with other keys).
	ErrAuth = fmt.Errorf("%w: authentication failed", ErrMalformed)
	// ErrOtherConnection: an Initial sent to another Destination Connection
	// ID than the Opener's: another connection from the same address and
	// port, or the same one after the server's first packet (which the
	// Opener's keys still open: see ClientInitial).
	ErrOtherConnection = errors.New("quic: initial of another connection")
	// ErrTooLarge: the ClientHello would be longer than MaxHello, or its
	// CRYPTO frames reach beyond it.
	ErrTooLarge = fmt.Errorf("%w: crypto stream too large", ErrMalformed)
)

// version holds what differs between QUIC v1 and v2.
type version struct {
	salt                       []byte
	keyLabel, ivLabel, hpLabel string
	initialType, retryType     byte // the long-header packet type bits
	zeroRTTType, handshakeType byte
}

var (
	v1 = version{
		salt:     []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
		keyLabel: "quic key", ivLabel: "quic iv", hpLabel: "quic hp",
		initialType: 0, zeroRTTType: 1, handshakeType: 2, retryType: 3,
	}
	v2 = version{
		salt:     []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9},
		keyLabel: "quicv2 key", ivLabel: "quicv2 iv", hpLabel: "quicv2 hp",
		initialType: 1, zeroRTTType: 2, handshakeType: 3, retryType: 0,
	}
)

func lookupVersion(v uint32) (*version, bool) {
	switch v {
	case Version1:
		return &v1, true
	case Version2:
		return &v2, true
	}
	return nil, false
}

// Known reports whether v is a version whose Initial packets can be read.
func Known(v uint32) bool {
	_, ok := lookupVersion(v)
	return ok
}

// Keys protect the Initial packets of one direction.
type Keys struct {
	aead cipher.AEAD
	iv   [12]byte
	hp   cipher.Block
}

// expandLabel is HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty
// context.
func expandLabel(secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), n)
	if err != nil {
		panic(err) // n is a constant far below the limit
	}
	return out
}

// NewKeys derives the Initial keys of the client (client true) or of the
// server for the client's first Destination Connection ID.
func NewKeys(v uint32, dcid []byte, client bool) (*Keys, error) {
	ver, ok := lookupVersion(v)
	if !ok {
		return nil, ErrVersion
	}
	initial, err := hkdf.Extract(sha256.New, dcid, ver.salt)
	if err != nil {
		return nil, err
	}
	label := "server in"
	if client {
		label = "client in"
	}
	secret := expandLabel(initial, label, 32)
	block, err := aes.NewCipher(expandLabel(secret, ver.keyLabel, 16))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hp, err := aes.NewCipher(expandLabel(secret, ver.hpLabel, 16))
	if err != nil {
		return nil, err
	}
	k := &Keys{aead: aead, hp: hp}
	copy(k.iv[:], expandLabel(secret, ver.ivLabel, 12))
	return k, nil
}

// nonce is the IV XOR the packet number (RFC 9001 §5.3).
func (k *Keys) nonce(pn uint64) [12]byte {
	n := k.iv
	for i := 0; i < 8; i++ {
		n[11-i] ^= byte(pn >> (8 * i))
	}
	return n
}

// mask is the header protection mask for a sample (RFC 9001 §5.4.3).
func (k *Keys) mask(sample []byte) [16]byte {
	var m [16]byte
	k.hp.Encrypt(m[:], sample)
	return m
}

// Header is the unprotected part of a long-header packet.
type Header struct {
	Version uint32
	Type    byte   // the two type bits, as on the wire (meaning depends on Version)
	DCID    []byte // aliases the datagram
	SCID    []byte // aliases the datagram
	Token   []byte // Initial only; aliases the datagram
	// pnOffset is where the packet number starts, end where the packet
	// ends (its Length field counts from pnOffset).
	pnOffset, end int
}

// Len is the length of the packet, header included: where the next packet
// coalesced in the datagram begins.
func (h *Header) Len() int { return h.end }

// IsInitial reports whether h is an Initial packet.
func (h *Header) IsInitial() bool {
	ver, ok := lookupVersion(h.Version)
	return ok && h.Type == ver.initialType
}

// ParseLongHeader parses the long header of the first packet in b. It fails
// with ErrNotInitial for a short header or a Version Negotiation packet, and
// with ErrVersion for a version other than v1 and v2 (whose length fields it
// cannot know).
func ParseLongHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < 7 || b[0]&0x80 == 0 {
		return h, ErrNotInitial
	}
	h.Version = binary.BigEndian.Uint32(b[1:5])
	if h.Version == 0 {
		return h, ErrNotInitial // Version Negotiation
	}
	ver, ok := lookupVersion(h.Version)
	if !ok {
		return h, ErrVersion
	}
	if b[0]&0x40 == 0 {
		return h, fmt.Errorf("%w: fixed bit clear", ErrMalformed)
	}
	h.Type = b[0] >> 4 & 3
	if h.Type == ver.retryType {
		return h, ErrNotInitial // a client never sends Retry
	}
	p := 5
	readCID := func() ([]byte, bool) {
		if p >= len(b) {
			return nil, false
		}
		n := int(b[p])
		p++
		if n > maxConnIDLen || p+n > len(b) {
			return nil, false
		}
		c := b[p : p+n : p+n]
		p += n
		return c, true
	}
	var ok1, ok2 bool
	if h.DCID, ok1 = readCID(); !ok1 {
		return h, fmt.Errorf("%w: bad destination connection id", ErrMalformed)
	}
	if h.SCID, ok2 = readCID(); !ok2 {
		return h, fmt.Errorf("%w: bad source connection id", ErrMalformed)
	}
	if h.Type == ver.initialType {
		n, l := readVarint(b[p:])
		if l == 0 || n > uint64(len(b)-p-l) {
			return h, fmt.Errorf("%w: bad token", ErrMalformed)
		}
		p += l
		h.Token = b[p : p+int(n) : p+int(n)]
		p += int(n)
	}
	n, l := readVarint(b[p:])
	if l == 0 || n > uint64(len(b)-p-l) {
		return h, fmt.Errorf("%w: bad length", ErrMalformed)
	}
	p += l
	if n < maxPNLen+sampleLen {
		// Too short to carry the header protection sample.
		return h, fmt.Errorf("%w: packet too short", ErrMalformed)
	}
	h.pnOffset, h.end = p, p+int(n)
	return h, nil
}

// Opener decrypts the Initial packets of one client, all sent to the same
// first Destination Connection ID under one version. It is not safe for
// concurrent use.
type Opener struct {
	Version uint32
	DCID    []byte // a copy
	// AnyDCID opens Initials sent to any connection ID: a client's Initials
	// after the server's first packet go to the server's connection ID but
	// are still protected with the keys of its first (RFC 9001 §5.2).
	AnyDCID bool
	keys    *Keys
	largest int64 // the largest packet number opened, -1 before the first
	scratch []byte
}

// NewOpener returns an Opener for the client whose first Initial has header h.
func NewOpener(h Header) (*Opener, error) {
	if !h.IsInitial() {
		return nil, ErrNotInitial
	}
	if len(h.DCID) < minClientDCIDLen {
		return nil, fmt.Errorf("%w: destination connection id of %d bytes (at least 8)", ErrMalformed, len(h.DCID))
	}
	k, err := NewKeys(h.Version, h.DCID, true)
	if err != nil {
		return nil, err
	}
	return &Opener{Version: h.Version, DCID: append([]byte(nil), h.DCID...), keys: k, largest: -1}, nil
}

// NewOpenerFor returns an Opener with the client Initial keys of dcid: after
// a Retry, those of the Retry's Source Connection ID.
func NewOpenerFor(version uint32, dcid []byte) (*Opener, error) {
	k, err := NewKeys(version, dcid, true)
	if err != nil {
		return nil, err
	}
	return &Opener{Version: version, DCID: append([]byte(nil), dcid...), keys: k, largest: -1}, nil
}

// IsVersionNegotiation reports whether datagram is a Version Negotiation
// packet (a long header with version 0, RFC 9000 §17.2.1).
func IsVersionNegotiation(datagram []byte) bool {
	return len(datagram) >= 7 && datagram[0]&0x80 != 0 && binary.BigEndian.Uint32(datagram[1:5]) == 0
}

// RetrySCID returns the Source Connection ID of a Retry packet of version v
// or v2 (the connection ID the client's next Initials are sent to, and whose
// keys protect them), or false if datagram is not a Retry.
func RetrySCID(datagram []byte) ([]byte, bool) {
	if len(datagram) < 7 || datagram[0]&0xc0 != 0xc0 {
		return nil, false
	}
	ver, ok := lookupVersion(binary.BigEndian.Uint32(datagram[1:5]))
	if !ok || datagram[0]>>4&3 != ver.retryType {
		return nil, false
	}
	p := 5
	for i := 0; i < 2; i++ {
		if p >= len(datagram) {
			return nil, false
		}
		n := int(datagram[p])
		p++
		if n > maxConnIDLen || p+n > len(datagram) {
			return nil, false
		}
		if i == 1 {
			return datagram[p : p+n : p+n], true
		}
		p += n
	}
	return nil, false
}

// OpenDatagram decrypts every Initial packet coalesced in datagram and calls
// fn with each payload (the frames), which aliases the Opener's scratch
// buffer until fn returns. It returns the number of Initial packets opened.
//
// Every long-header packet in the datagram must carry the first's
// Destination Connection ID (RFC 9000 §12.2; else ErrMalformed), and every
// Initial must be of the Opener's version and, unless AnyDCID, connection
// ID (else ErrOtherConnection): a datagram that would start another
// connection at the server is refused whatever comes first in it. Other
// long-header packets (0-RTT, Handshake) are skipped; a short-header packet,
// or bytes after the first packet that do not parse (the padding some
// clients append), end the datagram. A datagram without any Initial packet
// fails with ErrNotInitial.
func (o *Opener) OpenDatagram(datagram []byte, fn func(payload []byte) error) (int, error) {
	opened := 0
	var dcid []byte
	for first := true; len(datagram) > 0; first = false {
		h, err := ParseLongHeader(datagram)
		if err != nil {
			if first {
				return 0, err
			}
			break
		}
		pkt := datagram[:h.end]
		datagram = datagram[h.end:]
		if first {
			dcid = h.DCID
		} else if string(h.DCID) != string(dcid) {
			// A server that did not ignore such a packet would see a
			// connection the proxy never decided.
			return opened, fmt.Errorf("%w: coalesced packets of two connections", ErrMalformed)
		}
		if !h.IsInitial() {
			continue
		}
		if h.Version != o.Version || !o.AnyDCID && string(h.DCID) != string(o.DCID) {
			return opened, ErrOtherConnection
		}
		payload, err := o.open(pkt, h.pnOffset)
		if err != nil {
			return opened, err
		}
		opened++
		if err := fn(payload); err != nil {
			return opened, err
		}
	}
	if opened == 0 {
		return 0, ErrNotInitial
	}
	return opened, nil
}

// open removes header protection from a copy of pkt and decrypts it.
func (o *Opener) open(pkt []byte, pnOffset int) ([]byte, error) {
	o.scratch = append(o.scratch[:0], pkt...)
	p := o.scratch
	sample := p[pnOffset+maxPNLen : pnOffset+maxPNLen+sampleLen]
	m := o.keys.mask(sample)
	p[0] ^= m[0] & 0x0f
	if p[0]&0x0c != 0 {
		// Reserved bits must be zero once unprotected (RFC 9000 §17.2);
		// checked after decryption by the standard, before it here: a
		// packet with them set is dropped either way.
		return nil, ErrAuth
	}
	pnLen := int(p[0]&3) + 1
	var truncated uint64
	for i := 0; i < pnLen; i++ {
		p[pnOffset+i] ^= m[1+i]
		truncated = truncated<<8 | uint64(p[pnOffset+i])
	}
	pn := decodePacketNumber(o.largest, truncated, pnLen)
	hdr := p[:pnOffset+pnLen]
	ct := p[pnOffset+pnLen:]
	if len(ct) < tagLen {
		return nil, ErrAuth
	}
	nonce := o.keys.nonce(pn)
	out, err := o.keys.aead.Open(ct[:0], nonce[:], ct, hdr)
	if err != nil {
		return nil, ErrAuth
	}
	if int64(pn) > o.largest {
		o.largest = int64(pn)
	}
	return out, nil
}

// decodePacketNumber is RFC 9000 Appendix A.3.
func decodePacketNumber(largest int64, truncated uint64, pnLen int) uint64 {
	expected := uint64(largest + 1)
	win := uint64(1) << (8 * pnLen)
	half := win / 2
	mask := win - 1
	candidate := expected&^mask | truncated
	switch {
	case candidate+half <= expected && candidate < 1<<62-win:
		return candidate + win
	case candidate > expected+half && candidate >= win:
		return candidate - win
	}
	return candidate
}

// readVarint reads a QUIC variable-length integer (RFC 9000 §16); l is 0 if
// b is too short.
func readVarint(b []byte) (v uint64, l int) {
	if len(b) == 0 {
		return 0, 0
	}
	l = 1 << (b[0] >> 6)
	if len(b) < l {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < l; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, l
}

// appendVarint appends v (< 2^62) in the shortest encoding.
func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v>>8)|0x40, byte(v))
	case v < 1<<30:
		return append(b, byte(v>>24)|0x80, byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, byte(v>>56)|0xc0, byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
