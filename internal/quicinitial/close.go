package quicinitial

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
)

// CryptoError is the QUIC transport error code of a TLS alert (RFC 9001
// §4.8): CRYPTO_ERROR 0x100 plus the alert.
func CryptoError(alert uint8) uint64 { return 0x100 + uint64(alert) }

// ErrAmplification: the packet would be larger than the caller allows.
var ErrAmplification = errors.New("quic: close packet over the amplification limit")

// closeReason is the reason phrase of the CONNECTION_CLOSE: a word for the
// logs of the client's QUIC stack, nothing about the policy.
const closeReason = "egress: denied"

// AppendClose appends to dst a server Initial packet that closes the
// connection a client began with Destination Connection ID dcid and Source
// Connection ID scid: one CONNECTION_CLOSE frame (type 0x1c, the QUIC layer)
// with errorCode, protected with the server Initial keys of dcid (RFC 9000
// §10.2.3). The packet is addressed to scid and carries a fresh random
// Source Connection ID. It fails with ErrAmplification if the packet would
// exceed limit bytes: the caller passes three times what it received from
// the client's address (RFC 9000 §8.1), so a spoofed source gets at most that.
func AppendClose(dst []byte, version uint32, dcid, scid []byte, errorCode uint64, limit int) ([]byte, error) {
	ver, ok := lookupVersion(version)
	if !ok {
		return dst, ErrVersion
	}
	if len(scid) > maxConnIDLen {
		return dst, ErrMalformed
	}
	keys, err := NewKeys(version, dcid, false)
	if err != nil {
		return dst, err
	}
	var payload []byte
	payload = append(payload, frameConnectionClose)
	payload = appendVarint(payload, errorCode)
	payload = appendVarint(payload, frameCrypto) // the frame type that triggered it
	payload = appendVarint(payload, uint64(len(closeReason)))
	payload = append(payload, closeReason...)

	var ownCID [8]byte
	rand.Read(ownCID[:])
	const pnLen = 1
	start := len(dst)
	b := append(dst, 0xc0|ver.initialType<<4|(pnLen-1))
	b = binary.BigEndian.AppendUint32(b, version)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	b = append(b, byte(len(ownCID)))
	b = append(b, ownCID[:]...)
	b = append(b, 0) // token length
	length := pnLen + len(payload) + tagLen
	b = append(b, byte(length>>8)|0x40, byte(length)) // two-byte varint
	pnOffset := len(b) - start
	b = append(b, 0) // packet number 0
	if size := pnOffset + length; size > limit {
		return dst, ErrAmplification
	}
	nonce := keys.nonce(0)
	hdr := b[start:]
	b = keys.aead.Seal(b, nonce[:], payload, hdr)
	pkt := b[start:]
	m := keys.mask(pkt[pnOffset+maxPNLen : pnOffset+maxPNLen+sampleLen])
	pkt[0] ^= m[0] & 0x0f
	pkt[pnOffset] ^= m[1]
	return b, nil
}
