package sni

import (
	"crypto/sha256"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// JA4 (FoxIO, BSD-3-Clause spec "JA4: TLS Client Fingerprinting"):
//
//	t 13 d 15 16 h2 _ <cipher hash> _ <extension hash>
//
// protocol ("t": TLS over TCP, "q": QUIC), version (highest supported_versions entry, else the
// legacy version), "d" with SNI / "i" without, cipher count and extension count
// (GREASE excluded, at most 99), first and last character of the first ALPN value
// ("00" without ALPN), then the first 12 hex digits of SHA-256 over the sorted
// cipher list, and over the sorted extension list without SNI and ALPN followed by
// "_" and the signature algorithms in the order sent (no "_" if there are none).
// Lists are 4-digit lower-case hex joined by commas; GREASE is ignored everywhere.

// JA4's protocol characters.
const (
	ja4TCP  = 't'
	ja4QUIC = 'q'
)

const (
	ja4HashLen   = 12
	ja4EmptyHash = "000000000000"
	inlineCipher = 128
	hexDigits    = "0123456789abcdef"
)

// ja4Version maps a TLS version to JA4's two characters.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0200:
		return "s2"
	case 0x0100:
		return "s1"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func appendCount(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func appendHex16(b []byte, v uint16) []byte {
	return append(b, hexDigits[v>>12], hexDigits[v>>8&0xf], hexDigits[v>>4&0xf], hexDigits[v&0xf])
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// appendHash appends the first 12 hex digits of SHA-256(in), or twelve zeros when
// in is empty.
func appendHash(b, in []byte) []byte {
	if len(in) == 0 {
		return append(b, ja4EmptyHash...)
	}
	sum := sha256.Sum256(in)
	for _, c := range sum[:ja4HashLen/2] {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendJA4 appends the JA4 fingerprint with protocol character proto (ja4TCP or
// ja4QUIC). v.extensions must be sorted.
func (v *helloView) appendJA4(b []byte, proto byte, hasSNI bool, alpn []cryptobyte.String) []byte {
	ver := v.legacyVersion
	if v.hasSupVers && v.maxVersion != 0 {
		ver = v.maxVersion
	}
	b = append(b, proto)
	b = append(b, ja4Version(ver)...)
	if hasSNI {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}

	var cipherBuf [inlineCipher]uint16
	ciphers := cipherBuf[:0]
	for c := v.ciphers; !c.Empty(); {
		var id uint16
		c.ReadUint16(&id)
		if !isGREASE(id) {
			ciphers = append(ciphers, id)
		}
	}
	slices.Sort(ciphers)
	b = appendCount(b, len(ciphers))

	nExt := 0
	for _, e := range v.extensions {
		if !isGREASE(e) {
			nExt++
		}
	}
	b = appendCount(b, nExt)

	if len(alpn) == 0 {
		b = append(b, '0', '0')
	} else {
		p := alpn[0]
		first, last := p[0], p[len(p)-1]
		if isAlnum(first) && isAlnum(last) {
			b = append(b, first, last)
		} else {
			// First and last characters of the value's hex representation.
			b = append(b, hexDigits[first>>4], hexDigits[last&0xf])
		}
	}

	var scratch [1024]byte
	list := scratch[:0]
	for i, c := range ciphers {
		if i > 0 {
			list = append(list, ',')
		}
		list = appendHex16(list, c)
	}
	b = append(b, '_')
	b = appendHash(b, list)

	list = list[:0]
	for _, e := range v.extensions {
		if isGREASE(e) || e == extServerName || e == extALPN {
			continue
		}
		if len(list) > 0 {
			list = append(list, ',')
		}
		list = appendHex16(list, e)
	}
	if len(v.sigAlgs) > 0 {
		list = append(list, '_')
		first := true
		for s := v.sigAlgs; !s.Empty(); {
			var alg uint16
			s.ReadUint16(&alg)
			if isGREASE(alg) {
				continue
			}
			if !first {
				list = append(list, ',')
			}
			first = false
			list = appendHex16(list, alg)
		}
	}
	b = append(b, '_')
	return appendHash(b, list)
}
