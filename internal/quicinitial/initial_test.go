package quicinitial

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/sni"
	"github.com/quic-go/quic-go"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestKeyDerivation checks the Initial secrets against the published test
// vectors: RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1.
func TestKeyDerivation(t *testing.T) {
	dcid := unhex(t, "8394c8f03e515708")
	cases := []struct {
		name           string
		v              *version
		client, server [3]string // key, iv, hp
	}{
		{"v1", &v1,
			[3]string{"1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
			[3]string{"cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314"}},
		{"v2", &v2,
			[3]string{"8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
			[3]string{"82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652", "edf6d05c83121201b436e16877593c3a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			initial, err := hkdf.Extract(sha256.New, dcid, c.v.salt)
			if err != nil {
				t.Fatal(err)
			}
			for label, want := range map[string][3]string{"client in": c.client, "server in": c.server} {
				secret := expandLabel(initial, label, 32)
				got := [3]string{
					hex.EncodeToString(expandLabel(secret, c.v.keyLabel, 16)),
					hex.EncodeToString(expandLabel(secret, c.v.ivLabel, 12)),
					hex.EncodeToString(expandLabel(secret, c.v.hpLabel, 16)),
				}
				if got != want {
					t.Errorf("%s: got %v, want %v", label, got, want)
				}
			}
		})
	}
}

// capture is what a real quic-go client sent to a UDP socket that never
// answered, and how to answer it.
type capture struct {
	datagrams [][]byte
	pc        net.PacketConn
	client    net.Addr
	errc      chan error // the client's Dial result
}

// captureClient dials a silent loopback UDP socket with quic-go and records
// the datagrams of its first flight (and retransmissions, until want
// datagrams have arrived).
func captureClient(tb testing.TB, serverName string, versions []quic.Version, want int) *capture {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	c := &capture{pc: pc, errc: make(chan error, 1)}
	go func() {
		conn, err := quic.DialAddr(ctx, pc.LocalAddr().String(),
			&tls.Config{ServerName: serverName, NextProtos: []string{"h3"}},
			&quic.Config{Versions: versions, HandshakeIdleTimeout: 10 * time.Second})
		if conn != nil {
			conn.CloseWithError(0, "")
		}
		c.errc <- err
	}()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	for len(c.datagrams) < want {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			tb.Fatalf("after %d datagrams: %v", len(c.datagrams), err)
		}
		c.client = addr
		c.datagrams = append(c.datagrams, append([]byte(nil), buf[:n]...))
	}
	return c
}

// collect runs datagrams through an Opener and a Collector.
func collect(datagrams [][]byte) (*Collector, []byte, error) {
	h, err := ParseLongHeader(datagrams[0])
	if err != nil {
		return nil, nil, err
	}
	o, err := NewOpener(h)
	if err != nil {
		return nil, nil, err
	}
	var c Collector
	for _, d := range datagrams {
		if _, err := o.OpenDatagram(d, c.AddPayload); err != nil {
			return &c, nil, err
		}
		if hello := c.Hello(); hello != nil {
			return &c, hello, nil
		}
	}
	return &c, nil, nil
}

func TestQuicGoClientHello(t *testing.T) {
	for _, tc := range []struct {
		name     string
		versions []quic.Version
		version  uint32
	}{
		{"v1", []quic.Version{quic.Version1}, Version1},
		{"v2", []quic.Version{quic.Version2}, Version2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := captureClient(t, "h3.example.test", tc.versions, 2)
			for _, d := range c.datagrams {
				if len(d) < MinDatagram {
					t.Errorf("client datagram of %d bytes", len(d))
				}
			}
			h, err := ParseLongHeader(c.datagrams[0])
			if err != nil || h.Version != tc.version || !h.IsInitial() {
				t.Fatalf("header %+v, %v", h, err)
			}
			col, msg, err := collect(c.datagrams)
			if err != nil || msg == nil {
				t.Fatalf("hello not collected: %v (received %d)", err, col.Received())
			}
			hello, err := sni.ParseQUIC(msg)
			if err != nil {
				t.Fatal(err)
			}
			if hello.ServerName != "h3.example.test" || hello.ALPN[0] != "h3" {
				t.Errorf("hello %q %v", hello.ServerName, hello.ALPN)
			}
			if hello.JA4[0] != 'q' {
				t.Errorf("JA4 %q: want the q prefix", hello.JA4)
			}
			// A post-quantum key share makes the hello longer than one
			// packet: the point of reassembly.
			t.Logf("%s: hello of %d bytes in %d CRYPTO frames over %d datagrams", tc.name, len(msg), col.Frames, len(c.datagrams))
			if len(msg) < 1200 || col.Frames < 2 {
				t.Errorf("hello of %d bytes in %d CRYPTO frames: want a post-quantum hello over two packets", len(msg), col.Frames)
			}
		})
	}
}

// TestReorderAndLoss feeds the Initial packets of a real client in every
// order, and with the first lost and retransmitted (a client retransmits the
// same CRYPTO data in a new packet).
func TestReorderAndLoss(t *testing.T) {
	c := captureClient(t, "order.example.test", []quic.Version{quic.Version1}, 2)
	if _, msg, err := collect([][]byte{c.datagrams[1], c.datagrams[0]}); err != nil || msg == nil {
		t.Fatalf("reversed: %v", err)
	}
	// Retransmissions: keep reading until the client sends its first
	// datagram's data again.
	more := captureMore(t, c, 2)
	all := append(append([][]byte{}, c.datagrams...), more...)
	// Drop the first datagram: the retransmission brings its data.
	if _, msg, err := collect(append([][]byte{all[1]}, all[2:]...)); err != nil || msg == nil {
		t.Fatalf("lost then retransmitted: %v", err)
	}
	// Duplicates are harmless.
	if _, msg, err := collect([][]byte{all[0], all[0], all[1]}); err != nil || msg == nil {
		t.Fatalf("duplicate: %v", err)
	}
}

func captureMore(tb testing.TB, c *capture, n int) [][]byte {
	tb.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	c.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(out) < n {
		k, _, err := c.pc.ReadFrom(buf)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[:k]...))
	}
	return out
}

// TestCloseReachesClient answers a real client's Initial with AppendClose
// and checks the client fails at once with CRYPTO_ERROR 0x131.
func TestCloseReachesClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		versions []quic.Version
	}{{"v1", []quic.Version{quic.Version1}}, {"v2", []quic.Version{quic.Version2}}} {
		t.Run(tc.name, func(t *testing.T) {
			c := captureClient(t, "denied.example.test", tc.versions, 1)
			h, err := ParseLongHeader(c.datagrams[0])
			if err != nil {
				t.Fatal(err)
			}
			pkt, err := AppendClose(nil, h.Version, h.DCID, h.SCID, CryptoError(0x31), 3*len(c.datagrams[0]))
			if err != nil {
				t.Fatal(err)
			}
			if len(pkt) > 3*len(c.datagrams[0]) || len(pkt) > 100 {
				t.Errorf("close packet of %d bytes", len(pkt))
			}
			if _, err := c.pc.WriteTo(pkt, c.client); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-c.errc:
				var te *quic.TransportError
				if !errors.As(err, &te) || te.ErrorCode != 0x131 || !te.Remote {
					t.Fatalf("client error %v, want a remote CRYPTO_ERROR 0x131", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("client did not fail within 5s of the close")
			}
		})
	}
}

func TestCloseAmplificationLimit(t *testing.T) {
	dcid := unhex(t, "8394c8f03e515708")
	if _, err := AppendClose(nil, Version1, dcid, dcid, CryptoError(0x31), 40); !errors.Is(err, ErrAmplification) {
		t.Fatalf("got %v", err)
	}
}

// TestCollectorPieces cuts a real hello into pieces and delivers them in a
// random order with overlaps and PING/PADDING/ACK frames between them.
func TestCollectorPieces(t *testing.T) {
	c := captureClient(t, "pieces.example.test", []quic.Version{quic.Version1}, 2)
	_, msg, err := collect(c.datagrams)
	if err != nil || msg == nil {
		t.Fatal(err)
	}
	msg = append([]byte(nil), msg...)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var frames [][]byte
		for off := 0; off < len(msg); {
			n := 1 + rng.IntN(300)
			end := min(off+n, len(msg))
			start := max(0, off-rng.IntN(20)) // overlap the previous piece
			frames = append(frames, cryptoFrame(uint64(start), msg[start:end]))
			off = end
		}
		rng.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
		var col Collector
		for _, f := range frames {
			p := append([]byte{framePing, framePadding, frameAck, 5, 0, 0, 3}, f...)
			if err := col.AddPayload(p); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if got := col.Hello(); !bytes.Equal(got, msg) {
			t.Fatalf("round %d: reassembled %d bytes, want %d", round, len(got), len(msg))
		}
	}
}

func cryptoFrame(off uint64, data []byte) []byte {
	f := []byte{frameCrypto}
	f = appendVarint(f, off)
	f = appendVarint(f, uint64(len(data)))
	return append(f, data...)
}

func TestCollectorRefusals(t *testing.T) {
	hdr := []byte{1, 0, 0x10, 0} // a 4096-byte hello
	cases := map[string][][]byte{
		"huge offset":       {cryptoFrame(1<<40, []byte{1})},
		"past the limit":    {cryptoFrame(MaxHello-1, []byte{1, 2})},
		"hello too large":   {cryptoFrame(0, []byte{1, 1, 0, 0})},
		"past the hello":    {cryptoFrame(0, hdr), cryptoFrame(4096+4, []byte{1})},
		"disagreeing bytes": {cryptoFrame(0, []byte("abcdef")), cryptoFrame(2, []byte("xy"))},
		"stream frame":      {{0x08, 0, 0}},
		"connection close":  {{frameConnectionClose, 0, 0, 0}},
		"truncated crypto":  {{frameCrypto, 0x40}},
		"truncated ack":     {{frameAck, 1, 0}},
		"ack range count":   {{frameAck, 1, 0, 0x7f, 0xff, 0}},
		"empty packet":      {{}},
	}
	for name, payloads := range cases {
		t.Run(name, func(t *testing.T) {
			var c Collector
			var err error
			for _, p := range payloads {
				if err = c.AddPayload(p); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
	t.Run("too many pieces", func(t *testing.T) {
		var c Collector
		var err error
		for i := 0; i <= MaxRanges && err == nil; i++ {
			err = c.AddPayload(cryptoFrame(uint64(10+2*i), []byte{0}))
		}
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestOpenerRefusals: tampered, truncated and foreign packets are refused.
func TestOpenerRefusals(t *testing.T) {
	c := captureClient(t, "tamper.example.test", []quic.Version{quic.Version1}, 1)
	d := c.datagrams[0]
	h, err := ParseLongHeader(d)
	if err != nil {
		t.Fatal(err)
	}
	newOpener := func() *Opener {
		o, err := NewOpener(h)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	nop := func([]byte) error { return nil }
	tampered := append([]byte(nil), d...)
	tampered[len(tampered)-1] ^= 1
	if _, err := newOpener().OpenDatagram(tampered, nop); !errors.Is(err, ErrAuth) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := newOpener().OpenDatagram(d[:h.end-1], nop); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
	short := append([]byte{0x40}, d[1:]...)
	if _, err := newOpener().OpenDatagram(short, nop); !errors.Is(err, ErrNotInitial) {
		t.Errorf("short header: %v", err)
	}
	other := append([]byte(nil), d...)
	other[1], other[2], other[3], other[4] = 0xff, 0, 0, 0x1d
	if _, err := ParseLongHeader(other); !errors.Is(err, ErrVersion) {
		t.Errorf("draft version: %v", err)
	}
	// Another client's DCID: its keys do not open this packet.
	h2 := h
	h2.DCID = unhex(t, "0001020304050607")
	o, err := NewOpener(h2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.OpenDatagram(d, nop); !errors.Is(err, ErrOtherConnection) {
		t.Errorf("other dcid: %v", err)
	}
	o.AnyDCID = true
	if _, err := o.OpenDatagram(d, nop); !errors.Is(err, ErrAuth) {
		t.Errorf("other dcid's keys: %v", err)
	}
	// Two connections coalesced in one datagram.
	pkt := d[:h.end]
	twin := append([]byte(nil), pkt...)
	twin[6] ^= 0xff // a byte of the DCID
	if _, err := newOpener().OpenDatagram(append(append([]byte(nil), pkt...), twin...), nop); !errors.Is(err, ErrMalformed) {
		t.Errorf("coalesced connections: %v", err)
	}
	// The original still opens (the Opener never modifies the datagram).
	if n, err := newOpener().OpenDatagram(d, nop); n != 1 || err != nil {
		t.Errorf("original: %d, %v", n, err)
	}
	h3 := h
	h3.DCID = h.DCID[:4]
	if _, err := NewOpener(h3); !errors.Is(err, ErrMalformed) {
		t.Errorf("short dcid: %v", err)
	}
}

func TestDecodePacketNumber(t *testing.T) {
	// RFC 9000 Appendix A.3's example.
	if got := decodePacketNumber(0xa82f30ea, 0x9b32, 2); got != 0xa82f9b32 {
		t.Fatalf("got %#x", got)
	}
	if got := decodePacketNumber(-1, 0, 1); got != 0 {
		t.Fatalf("first: got %d", got)
	}
}

func TestVarint(t *testing.T) {
	for _, v := range []uint64{0, 63, 64, 16383, 16384, 1<<30 - 1, 1 << 30, 1<<62 - 1} {
		b := appendVarint(nil, v)
		got, l := readVarint(b)
		if got != v || l != len(b) {
			t.Errorf("%d: got %d (%d bytes of %d)", v, got, l, len(b))
		}
	}
}

// TestMatchHello: a retransmission of the decided hello matches, whatever
// its cut; another hello, or bytes past it, do not; frames without CRYPTO
// data always do.
func TestMatchHello(t *testing.T) {
	hello := []byte{1, 0, 0, 6, 'a', 'b', 'c', 'd', 'e', 'f'}
	cases := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"whole", cryptoFrame(0, hello), nil},
		{"middle", append([]byte{framePing}, cryptoFrame(5, hello[5:8])...), nil},
		{"ack only", []byte{frameAck, 1, 0, 0, 0, framePadding}, nil},
		{"close", []byte{frameConnectionClose, 0, 0, 0}, nil},
		{"other bytes", cryptoFrame(4, []byte("abX")), ErrOtherHello},
		{"past the end", cryptoFrame(8, []byte("efg")), ErrOtherHello},
		{"stream frame", []byte{0x08, 0, 0}, ErrMalformed},
	}
	for _, c := range cases {
		err := MatchHello(c.payload, hello)
		if (c.want == nil) != (err == nil) || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestRetrySCID(t *testing.T) {
	retry := []byte{0xf0, 0, 0, 0, 1, 2, 9, 9, 3, 7, 7, 7, 'T', 'O', 'K'}
	if scid, ok := RetrySCID(retry); !ok || string(scid) != "\x07\x07\x07" {
		t.Fatalf("v1 retry: %x %v", scid, ok)
	}
	v2retry := append([]byte(nil), retry...)
	v2retry[0] = 0xc0 // type 0 is Retry in v2
	copy(v2retry[1:5], []byte{0x6b, 0x33, 0x43, 0xcf})
	if _, ok := RetrySCID(v2retry); !ok {
		t.Fatal("v2 retry")
	}
	initial := append([]byte(nil), retry...)
	initial[0] = 0xc0
	if _, ok := RetrySCID(initial); ok {
		t.Fatal("v1 initial taken for a retry")
	}
	if _, ok := RetrySCID(retry[:10]); ok {
		t.Fatal("truncated")
	}
}

// TestOpenerHiddenConnection: an Initial of another connection is refused
// wherever it is in the datagram, behind a 0-RTT packet of its own
// connection ID included.
func TestOpenerHiddenConnection(t *testing.T) {
	a := captureClient(t, "allowed.example.test", []quic.Version{quic.Version1}, 1).datagrams[0]
	b := captureClient(t, "denied.example.test", []quic.Version{quic.Version1}, 1).datagrams[0]
	ha, _ := ParseLongHeader(a)
	hb, _ := ParseLongHeader(b)
	o, err := NewOpener(ha)
	if err != nil {
		t.Fatal(err)
	}
	zeroRTT := []byte{0xd0, 0, 0, 0, 1, byte(len(hb.DCID))}
	zeroRTT = append(zeroRTT, hb.DCID...)
	zeroRTT = append(zeroRTT, 0)        // SCID
	zeroRTT = append(zeroRTT, 0x40, 24) // length
	zeroRTT = append(zeroRTT, make([]byte, 24)...)
	d := append(zeroRTT, b[:hb.Len()]...)
	if _, err := o.OpenDatagram(d, func([]byte) error { return nil }); !errors.Is(err, ErrOtherConnection) {
		t.Fatalf("got %v, want ErrOtherConnection", err)
	}
	if _, err := o.OpenDatagram(zeroRTT, func([]byte) error { return nil }); !errors.Is(err, ErrNotInitial) {
		t.Fatalf("0-RTT alone: got %v, want ErrNotInitial", err)
	}
}
