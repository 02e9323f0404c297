package sni

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// bigHelloRecord is a valid one-record ClientHello whose handshake body is
// exactly MaxHelloSize bytes (baseSpec padded with a padding extension).
func bigHelloRecord(tb testing.TB) []byte {
	tb.Helper()
	base := baseSpec()
	pad := MaxHelloSize - (len(base.bytes()) - handshakeHeaderLen) - 4
	msg := base.with(ext{21, make([]byte, pad)}).bytes()
	if len(msg) != handshakeHeaderLen+MaxHelloSize {
		tb.Fatalf("padded hello %d bytes", len(msg))
	}
	return record(msg)
}

// countingReader counts Read calls on a bytes.Reader.
type countingReader struct {
	r     bytes.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// BenchmarkReadOneByteRecords reads hellos cut into 1-byte records: a real
// browser hello (accepted) and a 16 KiB hello (the most a client can make the
// reader work for). It reports bytes and allocations per hello and Read calls
// per hello (reads/op).
func BenchmarkReadOneByteRecords(b *testing.B) {
	for _, bc := range []struct {
		name  string
		hello func(testing.TB) []byte
	}{
		{"chromium", func(tb testing.TB) []byte { return fixtures(tb)["chromium"] }},
		{"16KiB", bigHelloRecord},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := records(b, bc.hello(b), 1)
			cr := &countingReader{}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			reads := 0
			for b.Loop() {
				cr.r.Reset(data)
				cr.calls = 0
				_, _, err := Read(cr)
				if err != nil && !errors.Is(err, ErrTooLarge) && !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				reads += cr.calls
			}
			b.ReportMetric(float64(reads)/float64(b.N), "reads/op")
		})
	}
}
