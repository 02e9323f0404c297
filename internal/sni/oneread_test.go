package sni

import (
	"bytes"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
)

// chunkReader serves data, at most max bytes per Read, and counts the
// calls that returned bytes.
type chunkReader struct {
	data  []byte
	max   int
	reads int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.max)], r.data)
	r.data = r.data[n:]
	r.reads++
	return n, nil
}

// TestReadTypicalHelloOneRead: a hello that has arrived whole is read with
// one read(2), not a header read and a body read: every fixture, and the
// post-quantum hellos of current browsers (Chrome's X25519MLKEM768 key
// share), fit in the first buffer.
func TestReadTypicalHelloOneRead(t *testing.T) {
	hellos := fixtures(t)
	hellos["utls-chrome"] = uHello(t, utls.HelloChrome_Auto)
	hellos["utls-firefox"] = uHello(t, utls.HelloFirefox_Auto)
	for name, hello := range hellos {
		t.Run(name, func(t *testing.T) {
			r := &chunkReader{data: hello, max: 1 << 20}
			h, raw, err := Read(r)
			if err != nil || !bytes.Equal(raw, hello) || h.RawLen != len(hello) {
				t.Fatalf("Read: %v (raw %d of %d bytes)", err, len(raw), len(hello))
			}
			if r.reads != 1 {
				t.Errorf("%d-byte hello took %d reads, want 1", len(hello), r.reads)
			}
		})
	}
}

// TestReadHelloPlusNextRecord: the first read(2) holds the hello and the
// record the client sent after it (a ChangeCipherSpec and application data,
// as a TLS 1.3 client in middlebox compatibility mode with early data sends
// them): raw is exactly what was read, in order, the hello first; the bytes
// after the hello are neither lost nor read twice (the next read on the
// socket returns what followed them).
func TestReadHelloPlusNextRecord(t *testing.T) {
	hello := fixtures(t)["chromium"]
	next := append([]byte{20, 3, 3, 0, 1, 1}, append([]byte{23, 3, 3, 0, 8}, "EARLYDAT"...)...)
	client, server := loopbackPair(t)
	if _, err := client.Write(append(slices.Clone(hello), next...)); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	// One write of a few KB on loopback is one segment: the first read
	// returns all of it.
	pr := &pacedReader{r: server, step: make(chan struct{}, 1)}
	h, raw, err := Read(pr)
	if err != nil {
		t.Fatal(err)
	}
	if h.RawLen != len(hello) || h.Records != 1 || !bytes.Equal(raw, append(slices.Clone(hello), next...)) {
		t.Fatalf("RawLen %d, Records %d, raw %d bytes: want the hello (%d) then the next records (%d)",
			h.RawLen, h.Records, len(raw), len(hello), len(next))
	}
	if pr.reads != 1 {
		t.Errorf("%d reads, want 1", pr.reads)
	}
	if _, err := client.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(server, got); err != nil || string(got) != "tail" {
		t.Fatalf("after the hello the socket gave %q, %v; want the bytes that followed", got, err)
	}
}

// TestReadHelloInOneBytePieces: a hello in one record that arrives one byte
// per TCP segment (the writer waits until each byte was read) is reassembled
// from as many reads, with the same result as in one piece, and the byte
// written after it is returned in raw or left on the socket, never lost.
func TestReadHelloInOneBytePieces(t *testing.T) {
	hello := fixtures(t)["curl"]
	client, server := loopbackPair(t)
	pr := &pacedReader{r: server, step: make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() {
		for i := range hello {
			if _, err := client.Write(hello[i : i+1]); err != nil {
				errc <- err
				return
			}
			select {
			case <-pr.step: // the byte was read
			case <-time.After(10 * time.Second):
				errc <- io.ErrNoProgress
				return
			}
		}
		_, err := client.Write([]byte("X"))
		errc <- err
	}()
	server.SetReadDeadline(time.Now().Add(30 * time.Second))
	h, raw, err := Read(pr)
	if err != nil {
		t.Fatal(err)
	}
	if h.RawLen != len(hello) || h.Records != 1 || h.ServerName != fixtureName || !bytes.Equal(raw, hello) {
		t.Fatalf("RawLen %d, Records %d, %q, raw %d bytes; want the %d-byte hello", h.RawLen, h.Records, h.ServerName, len(raw), len(hello))
	}
	if pr.reads != len(hello) {
		t.Errorf("%d reads for %d bytes sent one by one", pr.reads, len(hello))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(server, b); err != nil || b[0] != 'X' {
		t.Fatalf("byte after the hello: %q, %v", b, err)
	}
}

// pacedReader reads r and signals step after each read that returned bytes.
type pacedReader struct {
	r     net.Conn
	step  chan struct{}
	reads int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.reads++
		select {
		case p.step <- struct{}{}:
		default:
		}
	}
	return n, err
}
