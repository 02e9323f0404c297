package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// paddedHello returns a valid one-record hello whose handshake message (header
// included) is exactly msgLen bytes: baseSpec plus a padding extension.
func paddedHello(tb testing.TB, msgLen int) []byte {
	tb.Helper()
	base := baseSpec()
	pad := msgLen - len(base.bytes()) - 4
	if pad < 0 {
		tb.Fatalf("hello of %d bytes is too short for the base spec", msgLen)
	}
	msg := base.with(ext{21, make([]byte, pad)}).bytes()
	if len(msg) != msgLen {
		tb.Fatalf("padded hello %d bytes, want %d", len(msg), msgLen)
	}
	return record(msg)
}

// errClass is the most specific sentinel err matches ("" for nil).
func errClass(err error) string {
	for _, s := range []error{ErrTooLarge, ErrDuplicateSNI, ErrMalformed, ErrNotTLS, ErrTruncated, ErrTimeout} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

// TestReadCaps: a hello is refused as soon as its records are more than
// MaxRecords or end past MaxRawBytes, and accepted right up to both; the
// reader never holds more than MaxRawBytes, however the bytes arrive.
func TestReadCaps(t *testing.T) {
	maxMsg := handshakeHeaderLen + MaxHelloSize
	for _, tc := range []struct {
		name      string
		msgLen    int
		recordLen int
		want      error  // nil: accepted
		detail    string // in the error
	}{
		{"3 KiB hello in 1-byte records (MaxRecords)", MaxRecords, 1, nil, ""},
		{"one byte more in 1-byte records", MaxRecords + 1, 1, ErrTooLarge, "more than 3072 records"},
		{"16 KiB hello in 1-byte records", maxMsg, 1, ErrTooLarge, "more than 3072 records"},
		{"16 KiB hello in 6-byte records", maxMsg, 6, ErrTooLarge, "records take more than 24576 bytes"},
		{"16 KiB hello in 11-byte records", maxMsg, 11, nil, ""},
		{"16 KiB hello in 1000-byte records", maxMsg, 1000, nil, ""},
		{"16 KiB hello in full records", maxMsg, 1 << 14, nil, ""},
		{"16 KiB hello in one record", maxMsg, maxMsg, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := records(t, paddedHello(t, tc.msgLen), tc.recordLen)
			for _, rd := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", bytes.NewReader(data)},
				{"byte by byte", &oneByteReader{data: data}},
			} {
				h, raw, err := Read(rd.r)
				if len(raw) > MaxRawBytes || cap(raw) > MaxRawBytes || !bytes.HasPrefix(data, raw) {
					t.Errorf("%s: raw len %d cap %d, limit %d", rd.name, len(raw), cap(raw), MaxRawBytes)
				}
				if tc.want == nil {
					if err != nil {
						t.Fatalf("%s: %v", rd.name, err)
					}
					if want := (tc.msgLen + tc.recordLen - 1) / tc.recordLen; h.Records != want || h.RawLen != len(data) {
						t.Errorf("%s: Records %d RawLen %d, want %d and %d", rd.name, h.Records, h.RawLen, want, len(data))
					}
					continue
				}
				if h != nil || !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.detail) {
					t.Fatalf("%s: Read = %v, %v; want %v (%s)", rd.name, h, err, tc.want, tc.detail)
				}
			}
		})
	}
}

// TestReadHeaderOnlyReservesLittle: a record header announcing a 16 KiB record
// makes the reader hold its first buffer, not the announced record.
func TestReadHeaderOnlyReservesLittle(t *testing.T) {
	head := []byte{22, 3, 1, 0x40, 0x00, 1, 0x00, 0x3f}
	_, raw, err := Read(bytes.NewReader(head))
	if !errors.Is(err, ErrTruncated) || !bytes.Equal(raw, head) {
		t.Fatalf("Read = %x, %v; want the header back and ErrTruncated", raw, err)
	}
	if cap(raw) > initialRawCap {
		t.Errorf("cap(raw) = %d after a bare header, want at most %d", cap(raw), initialRawCap)
	}
	if got := allocatedPerRead(t, func() { Read(bytes.NewReader(head)) }); got > initialRawCap+512 && !raceEnabled {
		t.Errorf("a bare header costs %d bytes of allocation, want at most %d", got, initialRawCap+512)
	}

	// A client that sends the header and waits.
	client, server := loopbackPair(t)
	if _, err := client.Write(head); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, raw, err = Read(server)
	if !errors.Is(err, ErrTimeout) || !bytes.Equal(raw, head) || cap(raw) > initialRawCap {
		t.Errorf("Read = %x (cap %d), %v; want the header, ErrTimeout, cap at most %d", raw, cap(raw), err, initialRawCap)
	}
}

// allocatedPerRead returns the bytes f allocates, averaged over 50 runs.
func allocatedPerRead(t *testing.T, f func()) uint64 {
	t.Helper()
	runtime.GC()
	f() // warm the pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 50
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// TestReadOneCopy: a hello in 1-byte records is held in one buffer that grew
// with what arrived (at most twice its length), and reading it allocates no
// more than that buffer and the ones it outgrew: no second copy of the bytes.
func TestReadOneCopy(t *testing.T) {
	data := records(t, fixtures(t)["chromium"], 1)
	for _, rd := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(data) }},
		{"byte by byte", func() io.Reader { return &oneByteReader{data: data} }},
	} {
		t.Run(rd.name, func(t *testing.T) {
			_, raw, err := Read(rd.r())
			if err != nil || !bytes.Equal(raw, data) {
				t.Fatalf("Read: %v", err)
			}
			if cap(raw) > 2*len(raw) {
				t.Errorf("cap(raw) = %d for %d bytes", cap(raw), len(raw))
			}
			if raceEnabled {
				t.Skip("allocation figures are meaningless under the race detector")
			}
			alloc := allocatedPerRead(t, func() { Read(rd.r()) })
			if limit := uint64(2*cap(raw) + 1024); alloc > limit {
				t.Errorf("Read allocates %d bytes for %d bytes of records (buffer cap %d), want at most %d",
					alloc, len(data), cap(raw), limit)
			}
		})
	}
}

// stopReader serves data, then fails the test if it is read again.
type stopReader struct {
	t    *testing.T
	data []byte
}

func (r *stopReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Error("Read went on reading after the hello was complete")
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReadPastHello: bytes read after the hello (early data, pipelined
// records) are returned in raw, in order, and nothing is read once the hello
// is complete.
func TestReadPastHello(t *testing.T) {
	curl := fixtures(t)["curl"]
	after := bytes.Repeat([]byte("early data "), 20)
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"one record", curl},
		{"7-byte records", records(t, curl, 7)},
		{"1-byte records", records(t, curl, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append(slices.Clone(tc.hello), after...)
			h, raw, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if h.RawLen != len(tc.hello) || !bytes.HasPrefix(data, raw) || len(raw) < h.RawLen {
				t.Errorf("RawLen %d, raw %d bytes; hello %d bytes", h.RawLen, len(raw), len(tc.hello))
			}
			if h.ServerName != fixtureName {
				t.Errorf("ServerName %q", h.ServerName)
			}
			// Exactly the hello available: no read after it.
			if _, raw, err = Read(&stopReader{t: t, data: tc.hello}); err != nil || !bytes.Equal(raw, tc.hello) {
				t.Errorf("Read = %d bytes, %v", len(raw), err)
			}
		})
	}
}

// TestReadBuffered: bytes the caller already read are the start of the stream,
// wherever the cut falls, and a hello that is complete in them is not read
// further.
func TestReadBuffered(t *testing.T) {
	chromium := fixtures(t)["chromium"]
	tail := []byte("after")
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"one record", chromium},
		{"7-byte records", records(t, chromium, 7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append(slices.Clone(tc.hello), tail...)
			for _, k := range []int{0, 1, 2, 5, 6, 9, 100, len(tc.hello) - 1, len(tc.hello), len(data)} {
				h, raw, err := ReadBuffered(bytes.NewReader(data[k:]), slices.Clone(data[:k]))
				if err != nil || h.RawLen != len(tc.hello) || h.ServerName != fixtureName {
					t.Fatalf("cut at %d: %+v, %v", k, h, err)
				}
				if len(raw) < k || !bytes.HasPrefix(data, raw) {
					t.Fatalf("cut at %d: raw %d bytes is not the start of the stream", k, len(raw))
				}
			}
			// All of it buffered: r is not read.
			h, raw, err := ReadBuffered(&stopReader{t: t}, slices.Clone(data))
			if err != nil || h.RawLen != len(tc.hello) || !bytes.Equal(raw, data) {
				t.Fatalf("all buffered: %v, raw %d bytes", err, len(raw))
			}
			// The caller's spare capacity is used, up to MaxRawBytes only.
			buf := append(make([]byte, 0, 1<<20), data[:3]...)
			_, raw, err = ReadBuffered(bytes.NewReader(bytes.Repeat(data[3:], 100)), buf)
			if err != nil || cap(raw) > MaxRawBytes {
				t.Fatalf("large buffered cap: %v, cap(raw) %d", err, cap(raw))
			}
		})
	}
}

// TestReadReassemblyNotAliased: a hello reassembled from several records is
// parsed in a pooled buffer; the Hello keeps nothing of it.
func TestReadReassemblyNotAliased(t *testing.T) {
	first := records(t, goHello(t, &tls.Config{ServerName: "first.example", NextProtos: []string{"h2", "first"}}), 7)
	second := records(t, goHello(t, &tls.Config{ServerName: "second.example", NextProtos: []string{"h2", "other"}}), 7)
	h1, _, err := Read(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	want := *h1
	want.ALPN = slices.Clone(h1.ALPN)
	for range 10 {
		if _, _, err := Read(bytes.NewReader(second)); err != nil {
			t.Fatal(err)
		}
	}
	if h1.ServerName != want.ServerName || h1.JA4 != want.JA4 || !slices.Equal(h1.ALPN, want.ALPN) || h1.ServerName != "first.example" {
		t.Fatalf("first hello changed after later reads: %+v", h1)
	}
}
