package sni

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

const fixtureName = "www.example.com"

// fixtures returns the captured hellos by short name ("chromium", ...).
func fixtures(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "clienthellos", "*.bin"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures: %v", err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".bin")] = b
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// recordingConn is a net.Conn that keeps what is written to it and answers reads
// with EOF, so a TLS client writes its ClientHello and then fails.
type recordingConn struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recordingConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}
func (c *recordingConn) Close() error { return nil }
func (c *recordingConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}
func (c *recordingConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}
}
func (c *recordingConn) SetDeadline(time.Time) error      { return nil }
func (c *recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recordingConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// goHello returns the records a crypto/tls client writes for cfg.
func goHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	rc := &recordingConn{}
	err := tls.Client(rc, cfg).Handshake()
	if err == nil {
		tb.Fatal("handshake against a recording conn succeeded")
	}
	b := rc.bytes()
	if len(b) < recordHeaderLen {
		tb.Fatalf("tls client wrote %d bytes: %v", len(b), err)
	}
	return b
}

// records splits a single-record hello into records with payloads of at most
// size bytes each.
func records(tb testing.TB, hello []byte, size int) []byte {
	tb.Helper()
	msg := message(tb, hello)
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// message returns the handshake message inside a one-record hello.
func message(tb testing.TB, hello []byte) []byte {
	tb.Helper()
	if len(hello) < recordHeaderLen || int(hello[3])<<8|int(hello[4]) != len(hello)-recordHeaderLen {
		tb.Fatalf("not a single-record hello (%d bytes)", len(hello))
	}
	return hello[recordHeaderLen:]
}

// record wraps msg in one handshake record.
func record(msg []byte) []byte {
	out := []byte{recordTypeHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}
	return append(out, msg...)
}

// ext is one extension for helloSpec.
type ext struct {
	typ  uint16
	data []byte
}

// helloSpec builds synthetic ClientHellos for the malformed-input table.
type helloSpec struct {
	msgType     uint8
	version     uint16
	sessionID   []byte
	ciphers     []byte // raw cipher_suites vector content
	compression []byte
	noExtBlock  bool
	exts        []ext
	trailing    []byte // bytes after the extensions block, inside the body
}

func baseSpec() helloSpec {
	return helloSpec{
		msgType:     typeClientHello,
		version:     0x0303,
		sessionID:   make([]byte, 32),
		ciphers:     []byte{0x13, 0x01, 0xc0, 0x2f},
		compression: []byte{0},
		exts: []ext{
			{extServerName, sniData(0, fixtureName)},
			{extSupportedVersions, []byte{4, 0x03, 0x04, 0x03, 0x03}},
			{extSignatureAlgorithms, []byte{0, 4, 0x04, 0x03, 0x08, 0x04}},
			{extKeyShare, []byte{0, 6, 0x00, 0x1d, 0, 2, 0xaa, 0xbb}},
		},
	}
}

func (s helloSpec) with(e ...ext) helloSpec {
	s.exts = append(slices.Clone(s.exts), e...)
	return s
}

func (s helloSpec) replace(typ uint16, data []byte) helloSpec {
	s.exts = slices.Clone(s.exts)
	for i := range s.exts {
		if s.exts[i].typ == typ {
			s.exts[i].data = data
			return s
		}
	}
	s.exts = append(s.exts, ext{typ, data})
	return s
}

func (s helloSpec) bytes() []byte {
	var b cryptobyte.Builder
	b.AddUint8(s.msgType)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(s.version)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.ciphers) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.compression) })
		if !s.noExtBlock {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, e := range s.exts {
					b.AddUint16(e.typ)
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
				}
			})
		}
		b.AddBytes(s.trailing)
	})
	return b.BytesOrPanic()
}

// sniData builds a server_name extension body with entries of (type, name) pairs.
func sniData(pairs ...any) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for i := 0; i+1 < len(pairs); i += 2 {
			b.AddUint8(uint8(pairs[i].(int)))
			name := pairs[i+1].(string)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
		}
	})
	return b.BytesOrPanic()
}

// alpnData builds an ALPN extension body.
func alpnData(protos ...string) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range protos {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
		}
	})
	return b.BytesOrPanic()
}

// referenceJA4 computes JA4 from what crypto/tls's server saw (ClientHelloInfo),
// with plain string operations: an independent check of the fast implementation.
func referenceJA4(info *tls.ClientHelloInfo, legacyVersion uint16) string {
	grease := func(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }
	hexList := func(vs []uint16, sorted bool, skip func(uint16) bool) []string {
		var out []string
		for _, v := range vs {
			if grease(v) || (skip != nil && skip(v)) {
				continue
			}
			out = append(out, fmt.Sprintf("%04x", v))
		}
		if sorted {
			sort.Strings(out)
		}
		return out
	}
	hash := func(s string) string {
		if s == "" {
			return "000000000000"
		}
		return fmt.Sprintf("%x", sha256Sum([]byte(s)))[:12]
	}
	ver := legacyVersion
	if vs := hexList(info.SupportedVersions, true, nil); len(vs) > 0 {
		fmt.Sscanf(vs[len(vs)-1], "%04x", &ver)
	}
	versions := map[uint16]string{0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}
	v, ok := versions[ver]
	if !ok {
		v = "00"
	}
	sni := "i"
	if info.ServerName != "" {
		sni = "d"
	}
	ciphers := hexList(info.CipherSuites, true, nil)
	exts := hexList(info.Extensions, true, nil)
	alpn := "00"
	if len(info.SupportedProtos) > 0 {
		p := info.SupportedProtos[0]
		alnum := func(c byte) bool {
			return strings.IndexByte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", c) >= 0
		}
		if alnum(p[0]) && alnum(p[len(p)-1]) {
			alpn = string([]byte{p[0], p[len(p)-1]})
		} else {
			h := fmt.Sprintf("%x", p)
			alpn = string([]byte{h[0], h[len(h)-1]})
		}
	}
	var sig []uint16
	for _, s := range info.SignatureSchemes {
		sig = append(sig, uint16(s))
	}
	extPart := strings.Join(hexList(info.Extensions, true, func(v uint16) bool { return v == 0 || v == 0x10 }), ",")
	if sigs := hexList(sig, false, nil); len(sigs) > 0 {
		extPart += "_" + strings.Join(sigs, ",")
	}
	return fmt.Sprintf("t%s%s%02d%02d%s_%s_%s", v, sni, min(len(ciphers), 99), min(len(exts), 99), alpn,
		hash(strings.Join(ciphers, ",")), hash(extPart))
}

// serverView feeds raw client bytes to a real crypto/tls server over net.Pipe and
// returns the ClientHelloInfo it parsed (nil and the error if it refused them).
func serverView(tb testing.TB, raw []byte) (*tls.ClientHelloInfo, error) {
	tb.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go func() {
		_, _ = c1.Write(raw)
		_, _ = io.Copy(io.Discard, c1)
	}()
	var got *tls.ClientHelloInfo
	errStop := errors.New("stop after hello")
	srv := tls.Server(c2, &tls.Config{
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			got = info
			return nil, errStop
		},
	})
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	err := srv.Handshake()
	if got != nil {
		return got, nil
	}
	return nil, err
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
