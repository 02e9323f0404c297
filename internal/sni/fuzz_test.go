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
	f.Fuzz(func(t *testing.T, data []byte) {
		h, raw, err := Read(bytes.NewReader(data))
		if len(raw) > len(data) || !bytes.Equal(raw, data[:len(raw)]) {
			t.Fatalf("raw (%d bytes) is not a prefix of the input (%d bytes)", len(raw), len(data))
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
		if h.Records < 1 || !ja4Pattern.MatchString(h.JA4) {
			t.Fatalf("hello %+v", h)
		}
		// Reading the same bytes again, one byte per read, gives the same result.
		h2, raw2, err := Read(&oneByteReader{data: data})
		if err != nil || !bytes.Equal(raw, raw2) || h2.JA4 != h.JA4 || h2.ServerName != h.ServerName {
			t.Fatalf("byte-at-a-time read differs: %v", err)
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
