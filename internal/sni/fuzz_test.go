package sni

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

func FuzzParse(f *testing.F) {
	fx := fixtures(f)
	for _, name := range sortedKeys(fx) {
		f.Add(fx[name][recordHeaderLen:])
	}
	f.Add(baseSpec().bytes())
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := Parse(msg)
		if err != nil {
			if h != nil {
				t.Fatal("hello returned with an error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if !ja4Pattern.MatchString(h.JA4) {
			t.Fatalf("JA4 %q", h.JA4)
		}
		if h.HasSNI != (h.ServerName != "") {
			t.Fatalf("HasSNI %v ServerName %q", h.HasSNI, h.ServerName)
		}
		if !bytes.Contains(msg, []byte(h.ServerName)) {
			t.Fatal("ServerName not in the message")
		}
		// Differential check: what Parse accepts, crypto/tls's server accepts too,
		// and reads the same name and protocols from.
		if len(msg) <= 1<<14 {
			info, err := serverView(t, record(msg))
			if err != nil {
				t.Fatalf("Parse accepted a hello crypto/tls refuses: %v", err)
			}
			if info.ServerName != h.ServerName || !slices.Equal(info.SupportedProtos, h.ALPN) && len(h.ALPN)+len(info.SupportedProtos) > 0 {
				t.Fatalf("crypto/tls saw %q %q, Parse %q %q", info.ServerName, info.SupportedProtos, h.ServerName, h.ALPN)
			}
		}
	})
}

func FuzzRead(f *testing.F) {
	fx := fixtures(f)
	for _, name := range sortedKeys(fx) {
		f.Add(fx[name])
		f.Add(records(f, fx[name], 7))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	// The reader's limits: a bare header announcing a full record, a hello
	// one record over MaxRecords, one whose records end past MaxRawBytes, and
	// bytes after a complete hello.
	f.Add([]byte{22, 3, 1, 0x40, 0x00})
	f.Add(records(f, paddedHello(f, MaxRecords+1), 1))
	f.Add(records(f, paddedHello(f, handshakeHeaderLen+MaxHelloSize), 6))
	f.Add(append(slices.Clone(fx["curl"]), 23, 3, 3, 0, 1, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, raw, err := Read(bytes.NewReader(data))
		if len(raw) > len(data) || !bytes.Equal(raw, data[:len(raw)]) {
			t.Fatalf("raw (%d bytes) is not a prefix of the input (%d bytes)", len(raw), len(data))
		}
		if len(raw) > MaxRawBytes || cap(raw) > MaxRawBytes {
			t.Fatalf("raw len %d cap %d, over MaxRawBytes", len(raw), cap(raw))
		}
		// The same bytes one per read, or with a part already buffered, give
		// the same outcome and the same hello bytes.
		h2, raw2, err2 := Read(&oneByteReader{data: data})
		cut := len(data) / 3
		h3, raw3, err3 := ReadBuffered(bytes.NewReader(data[cut:]), slices.Clone(data[:cut]))
		if errClass(err) != errClass(err2) || errClass(err) != errClass(err3) {
			t.Fatalf("outcome depends on how bytes arrive: %v / byte by byte %v / buffered %d: %v", err, err2, cut, err3)
		}
		if !bytes.HasPrefix(data, raw2) || !bytes.HasPrefix(data, raw3) || len(raw3) < cut {
			t.Fatal("raw is not the start of the stream")
		}
		if err != nil {
			if h != nil {
				t.Fatal("hello returned with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotTLS) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if h.Records < 1 || h.Records > MaxRecords || h.RawLen > len(raw) || !ja4Pattern.MatchString(h.JA4) {
			t.Fatalf("hello %+v", h)
		}
		for _, o := range []*Hello{h2, h3} {
			if o.RawLen != h.RawLen || o.Records != h.Records || o.JA4 != h.JA4 || o.ServerName != h.ServerName {
				t.Fatalf("hello differs with another cut of the bytes: %+v vs %+v", o, h)
			}
		}
		if len(raw2) != h.RawLen {
			t.Fatalf("byte by byte, Read read %d bytes past the hello", len(raw2)-h.RawLen)
		}
	})
}

// oneByteReader returns at most one byte per Read.
type oneByteReader struct{ data []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}
