package sni

import "io"

// TLS alert descriptions (RFC 8446, Section 6) the proxy sends before closing.
const (
	AlertHandshakeFailure uint8 = 40
	AlertAccessDenied     uint8 = 49
	AlertDecodeError      uint8 = 50
	AlertProtocolVersion  uint8 = 70
	AlertInternalError    uint8 = 80
)

const (
	recordTypeAlert = 21
	alertLevelFatal = 2
)

// WriteAlert writes one fatal TLS alert record with description desc (record
// version 0x0303): 15 03 03 00 02 02 desc.
func WriteAlert(w io.Writer, desc uint8) error {
	rec := []byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, desc}
	_, err := w.Write(rec)
	return err
}
