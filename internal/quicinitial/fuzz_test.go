package quicinitial

import (
	"bytes"
	"errors"
	"testing"

	"github.com/quic-go/quic-go"
)

// FuzzInitial runs arbitrary datagrams through the header parser, the
// Opener and the Collector: no panic, and a refusal is one of the package's
// errors. Seeds are the Initial datagrams of a real quic-go client (v1 and
// v2) and their truncations.
func FuzzInitial(f *testing.F) {
	for _, v := range []quic.Version{quic.Version1, quic.Version2} {
		c := captureClient(f, "fuzz.example.test", []quic.Version{v}, 2)
		for _, d := range c.datagrams {
			f.Add(d, c.datagrams[0])
			f.Add(d[:60], c.datagrams[0])
		}
	}
	f.Fuzz(func(t *testing.T, d, first []byte) {
		h, err := ParseLongHeader(first)
		if err != nil {
			if !errors.Is(err, ErrNotInitial) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		o, err := NewOpener(h)
		if err != nil {
			return
		}
		var c Collector
		orig := append([]byte(nil), d...)
		_, err = o.OpenDatagram(d, c.AddPayload)
		if err != nil && !errors.Is(err, ErrNotInitial) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrMalformed) &&
			!errors.Is(err, ErrOtherConnection) {
			t.Fatalf("unexpected error %v", err)
		}
		if !bytes.Equal(orig, d) {
			t.Fatal("the datagram was modified")
		}
		if hello := c.Hello(); len(hello) > MaxHello {
			t.Fatalf("hello of %d bytes", len(hello))
		}
	})
}

// FuzzCollector feeds arbitrary frame payloads, cut at arbitrary points, to
// a Collector: no panic, bounded memory, and a complete hello is exactly the
// bytes covered.
func FuzzCollector(f *testing.F) {
	msg := append([]byte{1, 0, 0, 8}, "abcdefgh"...)
	f.Add(append(cryptoFrame(4, msg[4:]), cryptoFrame(0, msg[:6])...), uint8(3))
	f.Add(append([]byte{framePing, framePadding, frameAck, 1, 0, 0, 0}, cryptoFrame(0, msg)...), uint8(0))
	f.Add(cryptoFrame(1<<40, []byte{1}), uint8(1))
	f.Fuzz(func(t *testing.T, p []byte, cut uint8) {
		var c Collector
		parts := [][]byte{p}
		if int(cut) < len(p) {
			parts = [][]byte{p[:cut], p[cut:]}
		}
		for _, part := range parts {
			if err := c.AddPayload(part); err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
		}
		if cap(c.buf) > MaxHello || len(c.ranges) > MaxRanges {
			t.Fatalf("holds %d bytes in %d ranges", cap(c.buf), len(c.ranges))
		}
		if h := c.Hello(); h != nil && c.Received() < len(h) {
			t.Fatalf("hello of %d bytes from %d received", len(h), c.Received())
		}
	})
}
