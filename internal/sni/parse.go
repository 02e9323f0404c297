package sni

import (
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// TLS extension code points (IANA).
const (
	extServerName           uint16 = 0
	extStatusRequest        uint16 = 5
	extSupportedGroups      uint16 = 10
	extECPointFormats       uint16 = 11
	extSignatureAlgorithms  uint16 = 13
	extALPN                 uint16 = 16
	extSCT                  uint16 = 18
	extExtendedMasterSecret uint16 = 23
	extSessionTicket        uint16 = 35
	extPreSharedKey         uint16 = 41
	extEarlyData            uint16 = 42
	extSupportedVersions    uint16 = 43
	extCookie               uint16 = 44
	extPSKModes             uint16 = 45
	extSignatureAlgsCert    uint16 = 50
	extKeyShare             uint16 = 51
	extQUICTransportParams  uint16 = 57
	extEncryptedClientHello uint16 = 0xfe0d
	extRenegotiationInfo    uint16 = 0xff01
)

const (
	nameTypeHostName   = 0
	versionTLS13       = 0x0304
	compressionNone    = 0
	maxSessionIDLen    = 32
	inlineExtensions   = 48
	inlineALPN         = 8
	inlineStringsBytes = 512
)

// Parse parses one handshake message (type byte, 3-byte length, body) that must be
// a ClientHello. Hello.Records is left 0.
func Parse(msg []byte) (*Hello, error) {
	h := new(Hello)
	if err := h.parse(msg, ja4TCP); err != nil {
		return nil, err
	}
	return h, nil
}

// ParseQUIC is Parse for a ClientHello carried in the CRYPTO frames of QUIC
// Initial packets (reassembled by internal/quicinitial): the same checks, and
// JA4's "q" protocol prefix.
func ParseQUIC(msg []byte) (*Hello, error) {
	h := new(Hello)
	if err := h.parse(msg, ja4QUIC); err != nil {
		return nil, err
	}
	return h, nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// helloView holds the parts of a ClientHello the fingerprint needs, as sub-slices of
// the message (no copies).
type helloView struct {
	legacyVersion uint16
	ciphers       cryptobyte.String
	extensions    []uint16 // extension types, sorted once parsing is done
	sigAlgs       cryptobyte.String
	hasSupVers    bool
	maxVersion    uint16 // highest non-GREASE supported_versions entry
}

// parse mirrors crypto/tls clientHelloMsg.unmarshal plus the ClientHello checks
// crypto/tls's server makes before negotiating, and the package's own limits.
func (h *Hello) parse(msg []byte, proto byte) error {
	s := cryptobyte.String(msg)
	var (
		typ  uint8
		body cryptobyte.String
	)
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) {
		return malformed("bad handshake header")
	}
	if typ != typeClientHello {
		return malformed("not a client_hello")
	}
	if len(body) > MaxHelloSize {
		return fmt.Errorf("%w: handshake message of %d bytes, limit %d", ErrTooLarge, len(body), MaxHelloSize)
	}
	if !s.Empty() {
		return malformed("data after the client hello")
	}

	var (
		v                      helloView
		sessionID, compression cryptobyte.String
	)
	if !body.ReadUint16(&v.legacyVersion) || !body.Skip(32) ||
		!body.ReadUint8LengthPrefixed(&sessionID) ||
		!body.ReadUint16LengthPrefixed(&v.ciphers) ||
		!body.ReadUint8LengthPrefixed(&compression) {
		return malformed("truncated fixed fields")
	}
	if len(sessionID) > maxSessionIDLen {
		return malformed("session id longer than 32 bytes")
	}
	if len(v.ciphers) == 0 || len(v.ciphers)%2 != 0 {
		return malformed("bad cipher_suites length")
	}
	if !slices.Contains([]byte(compression), compressionNone) {
		return malformed("null compression not offered")
	}

	var (
		extBuf        [inlineExtensions]uint16
		alpnBuf       [inlineALPN]cryptobyte.String
		alpn          = alpnBuf[:0]
		serverName    cryptobyte.String
		pskIdentities int
		pskBinders    int
	)
	v.extensions = extBuf[:0]
	h.Versions = h.versionsBuf[:0]

	if !body.Empty() {
		var exts cryptobyte.String
		if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
			return malformed("bad extensions block")
		}
		for !exts.Empty() {
			var (
				ext  uint16
				data cryptobyte.String
			)
			if !exts.ReadUint16(&ext) || !exts.ReadUint16LengthPrefixed(&data) {
				return malformed("truncated extension")
			}
			v.extensions = append(v.extensions, ext)

			switch ext {
			case extServerName:
				// RFC 6066, Section 3.
				var list cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
					return malformed("bad server_name")
				}
				for !list.Empty() {
					var (
						nameType uint8
						name     cryptobyte.String
					)
					if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
						return malformed("bad server_name entry")
					}
					if nameType != nameTypeHostName {
						continue // other name types are ignored, as crypto/tls does
					}
					if h.HasSNI {
						return ErrDuplicateSNI
					}
					if name[len(name)-1] == '.' {
						return malformed("server_name with a trailing dot")
					}
					h.HasSNI = true
					serverName = name
				}
			case extStatusRequest:
				// RFC 4366, Section 3.6.
				var statusType uint8
				var ignored cryptobyte.String
				if !data.ReadUint8(&statusType) ||
					!data.ReadUint16LengthPrefixed(&ignored) ||
					!data.ReadUint16LengthPrefixed(&ignored) {
					return malformed("bad status_request")
				}
			case extSupportedGroups:
				// RFC 8446, Section 4.2.7.
				var groups cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&groups) || groups.Empty() || len(groups)%2 != 0 {
					return malformed("bad supported_groups")
				}
			case extECPointFormats:
				// RFC 4492, Section 5.1.2.
				var points cryptobyte.String
				if !data.ReadUint8LengthPrefixed(&points) || points.Empty() {
					return malformed("bad ec_point_formats")
				}
			case extSessionTicket:
				// RFC 5077, Section 3.2: any content.
				data = nil
			case extSignatureAlgorithms, extSignatureAlgsCert:
				// RFC 8446, Section 4.2.3.
				var algs cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&algs) || algs.Empty() || len(algs)%2 != 0 {
					return malformed("bad signature_algorithms")
				}
				if ext == extSignatureAlgorithms {
					v.sigAlgs = algs
				}
			case extRenegotiationInfo:
				// RFC 5746, Section 3.2; crypto/tls's server also refuses a non-empty
				// renegotiated_connection on the initial handshake.
				var reneg cryptobyte.String
				if !data.ReadUint8LengthPrefixed(&reneg) {
					return malformed("bad renegotiation_info")
				}
				if !reneg.Empty() {
					return malformed("non-empty renegotiation_info on the initial handshake")
				}
			case extExtendedMasterSecret, extSCT, extEarlyData:
				// Empty by definition; crypto/tls only notes their presence and
				// requires no data (checked below).
			case extALPN:
				// RFC 7301, Section 3.1.
				var list cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
					return malformed("bad application_layer_protocol_negotiation")
				}
				for !list.Empty() {
					var proto cryptobyte.String
					if !list.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
						return malformed("empty ALPN protocol name")
					}
					alpn = append(alpn, proto)
				}
			case extSupportedVersions:
				// RFC 8446, Section 4.2.1.
				var list cryptobyte.String
				if !data.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
					return malformed("bad supported_versions")
				}
				v.hasSupVers = true
				for !list.Empty() {
					var ver uint16
					list.ReadUint16(&ver)
					if isGREASE(ver) {
						continue
					}
					h.Versions = append(h.Versions, ver)
					if ver > v.maxVersion {
						v.maxVersion = ver
					}
				}
			case extCookie:
				// RFC 8446, Section 4.2.2.
				var cookie cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&cookie) || cookie.Empty() {
					return malformed("bad cookie")
				}
			case extKeyShare:
				// RFC 8446, Section 4.2.8.
				var shares cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&shares) {
					return malformed("bad key_share")
				}
				for !shares.Empty() {
					var (
						group uint16
						key   cryptobyte.String
					)
					if !shares.ReadUint16(&group) || !shares.ReadUint16LengthPrefixed(&key) || key.Empty() {
						return malformed("bad key_share entry")
					}
				}
			case extPSKModes:
				// RFC 8446, Section 4.2.9.
				var modes cryptobyte.String
				if !data.ReadUint8LengthPrefixed(&modes) {
					return malformed("bad psk_key_exchange_modes")
				}
			case extQUICTransportParams:
				// Any content, as crypto/tls.
				data = nil
			case extPreSharedKey:
				// RFC 8446, Section 4.2.11.
				if !exts.Empty() {
					return malformed("pre_shared_key is not the last extension")
				}
				var identities, binders cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&identities) || identities.Empty() {
					return malformed("bad pre_shared_key identities")
				}
				for !identities.Empty() {
					var (
						label cryptobyte.String
						age   uint32
					)
					if !identities.ReadUint16LengthPrefixed(&label) || !identities.ReadUint32(&age) || label.Empty() {
						return malformed("bad pre_shared_key identity")
					}
					pskIdentities++
				}
				if !data.ReadUint16LengthPrefixed(&binders) || binders.Empty() {
					return malformed("bad pre_shared_key binders")
				}
				for !binders.Empty() {
					var binder cryptobyte.String
					if !binders.ReadUint8LengthPrefixed(&binder) || binder.Empty() {
						return malformed("bad pre_shared_key binder")
					}
					pskBinders++
				}
				if pskIdentities != pskBinders {
					return malformed("pre_shared_key identities and binders differ in number")
				}
			case extEncryptedClientHello:
				// Outer (real or GREASE) or inner ECH (RFC 9849 §5): its
				// structure is checked as a TLS server (crypto/tls)
				// checks it (an outer: cipher suite, config id, enc,
				// payload; an inner: nothing), not its encrypted content.
				var typ uint8
				var enc, payload cryptobyte.String
				if !data.ReadUint8(&typ) {
					return malformed("empty encrypted_client_hello")
				}
				switch typ {
				case 0: // outer
					if !data.Skip(4+1) || !data.ReadUint16LengthPrefixed(&enc) ||
						!data.ReadUint16LengthPrefixed(&payload) {
						return malformed("bad encrypted_client_hello")
					}
				case 1: // inner: empty
				default:
					return malformed("unknown encrypted_client_hello type")
				}
				h.ECH = true
			default:
				// Unknown extensions are ignored, content and all.
				continue
			}
			if !data.Empty() {
				return malformed(fmt.Sprintf("trailing data in extension %#04x", ext))
			}
		}
	}

	// Duplicate extensions are refused, as crypto/tls does; sorting (which the
	// fingerprint needs anyway) keeps this O(n log n) for hellos with thousands of
	// extensions.
	slices.Sort(v.extensions)
	for i := 1; i < len(v.extensions); i++ {
		if v.extensions[i] == v.extensions[i-1] {
			if v.extensions[i] == extServerName {
				return ErrDuplicateSNI
			}
			return malformed(fmt.Sprintf("duplicate extension %#04x", v.extensions[i]))
		}
	}

	if !v.hasSupVers {
		h.Versions = append(h.Versions, v.legacyVersion)
	} else if slices.Contains(h.Versions, versionTLS13) && (len(compression) != 1 || compression[0] != compressionNone) {
		// crypto/tls refuses any compression method list but {null} in TLS 1.3.
		return malformed("TLS 1.3 offered with compression methods")
	}

	// All strings of the hello share one allocation.
	var sb [inlineStringsBytes]byte
	b := append(sb[:0], serverName...)
	for _, p := range alpn {
		b = append(b, p...)
	}
	nameEnd := len(b)
	b = v.appendJA4(b, proto, h.HasSNI, alpn)
	all := string(b)
	h.ServerName = all[:len(serverName)]
	h.JA4 = all[nameEnd:]
	if len(alpn) > 0 {
		h.ALPN = h.alpnBuf[:0]
		off := len(serverName)
		for _, p := range alpn {
			h.ALPN = append(h.ALPN, all[off:off+len(p)])
			off += len(p)
		}
	}
	return nil
}

// isGREASE reports whether v is one of the reserved GREASE values of RFC 8701
// (0x0a0a, 0x1a1a, ..., 0xfafa).
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}
