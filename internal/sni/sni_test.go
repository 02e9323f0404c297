package sni

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"golang.org/x/crypto/cryptobyte"
)

var update = flag.Bool("update", false, "rewrite testdata/ja4.golden")

var ja4Pattern = regexp.MustCompile(`^t(13|12|11|10|s3|s2|s1|d1|d2|d3|00)[di][0-9]{2}[0-9]{2}[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

// checkJA4 compares h.JA4 with the reference computed from crypto/tls's own view
// of the same bytes.
func checkJA4(t *testing.T, h *Hello, raw []byte) {
	t.Helper()
	if !ja4Pattern.MatchString(h.JA4) {
		t.Errorf("JA4 %q has the wrong shape", h.JA4)
	}
	info, err := serverView(t, raw)
	if err != nil {
		t.Fatalf("crypto/tls server refused the hello: %v", err)
	}
	msg := raw[recordHeaderLen:]
	legacy := uint16(msg[4])<<8 | uint16(msg[5])
	if want := referenceJA4(info, legacy); h.JA4 != want {
		t.Errorf("JA4 = %s, reference from crypto/tls's view = %s", h.JA4, want)
	}
	if info.ServerName != h.ServerName {
		t.Errorf("ServerName = %q, crypto/tls saw %q", h.ServerName, info.ServerName)
	}
	if !slices.Equal(info.SupportedProtos, h.ALPN) && (len(info.SupportedProtos) > 0 || len(h.ALPN) > 0) {
		t.Errorf("ALPN = %q, crypto/tls saw %q", h.ALPN, info.SupportedProtos)
	}
}

func TestReadFixtures(t *testing.T) {
	fx := fixtures(t)
	golden := map[string]string{}
	goldenPath := filepath.Join("testdata", "ja4.golden")
	if b, err := os.ReadFile(goldenPath); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if name, fp, ok := strings.Cut(line, " "); ok {
				golden[name] = fp
			}
		}
	}
	var out strings.Builder
	for _, name := range sortedKeys(fx) {
		data := fx[name]
		t.Run(name, func(t *testing.T) {
			h, raw, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(raw, data) {
				t.Errorf("raw is %d bytes, want the %d bytes of the fixture", len(raw), len(data))
			}
			if h.ServerName != fixtureName || !h.HasSNI {
				t.Errorf("ServerName = %q HasSNI = %v", h.ServerName, h.HasSNI)
			}
			if h.Records != 1 {
				t.Errorf("Records = %d, want 1", h.Records)
			}
			if !slices.Contains(h.Versions, 0x0304) {
				t.Errorf("Versions = %x, want TLS 1.3 among them", h.Versions)
			}
			if name == "chromium" {
				if !h.ECH {
					t.Error("chromium hello: ECH = false")
				}
				if len(raw) <= 1500 {
					t.Errorf("chromium hello is %d bytes, want > 1500", len(raw))
				}
				if !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) {
					t.Errorf("ALPN = %q", h.ALPN)
				}
			}
			ph, err := Parse(message(t, data))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if ph.JA4 != h.JA4 || ph.ServerName != h.ServerName {
				t.Errorf("Parse and Read disagree: %+v vs %+v", ph, h)
			}
			checkJA4(t, h, raw)
			if want, ok := golden[name]; ok && !*update && want != h.JA4 {
				t.Errorf("JA4 = %s, golden %s", h.JA4, want)
			}
			fmt.Fprintf(&out, "%s %s\n", name, h.JA4)
		})
	}
	if *update {
		if err := os.WriteFile(goldenPath, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJA4Published checks JA4 against values published for real clients: curl
// 7.88/OpenSSL 3.0 and Chrome (browserleaks.com's t13d1516h2 fingerprint, whose
// raw form lists the ciphers, extensions and signature algorithms used here).
func TestJA4Published(t *testing.T) {
	fx := fixtures(t)
	h, _, err := Read(bytes.NewReader(fx["curl"]))
	if err != nil {
		t.Fatal(err)
	}
	if want := "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"; h.JA4 != want {
		t.Errorf("curl JA4 = %s, published %s", h.JA4, want)
	}

	// Chrome 143 as published, extensions in the order sent (ja4_ro) with the
	// contents a real Chrome puts in them.
	ciphers := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	var cb []byte
	cb = append(cb, 0x3a, 0x3a) // GREASE, ignored
	for _, c := range ciphers {
		cb = append(cb, byte(c>>8), byte(c))
	}
	spec := helloSpec{msgType: 1, version: 0x0303, sessionID: make([]byte, 32), ciphers: cb, compression: []byte{0}}
	spec.exts = []ext{
		{0x1a1a, nil}, // GREASE
		{0x002d, []byte{1, 1}},
		{0x0033, []byte{0, 6, 0x00, 0x1d, 0, 2, 1, 2}},
		{0x0010, alpnData("h2", "http/1.1")},
		{0xfe0d, []byte{0, 0, 1, 0, 1, 0x42, 0, 0, 0, 0}},
		{0x0017, nil},
		{0x44cd, []byte{0, 3, 2, 'h', '2'}},
		{0x0000, sniData(0, "tls.browserleaks.com")},
		{0x000b, []byte{1, 0}},
		{0x000a, []byte{0, 4, 0x11, 0xec, 0x00, 0x1d}},
		{0x002b, []byte{4, 0x03, 0x04, 0x03, 0x03}},
		{0xff01, []byte{0}},
		{0x0023, nil},
		{0x0012, nil},
		{0x0005, []byte{1, 0, 0, 0, 0}},
		{0x000d, []byte{0, 16, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01}},
		{0x001b, []byte{2, 0, 2}},
		{0x2a2a, []byte{0}}, // GREASE
	}
	h, err = Parse(spec.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if want := "t13d1516h2_8daaf6152771_d8a2da3f94cd"; h.JA4 != want {
		t.Errorf("Chrome JA4 = %s, published %s", h.JA4, want)
	}
}

func TestALPNFingerprintChars(t *testing.T) {
	for _, tc := range []struct {
		name, proto, want string
	}{
		{"h2", "h2", "h2"},
		{"http/1.1", "http/1.1", "h1"},
		{"single char", "x", "xx"},
		{"non-alnum end", "h2/", "6f"},
		{"non-alnum start", "\xabxyz", "aa"},
		{"non-ascii", "\xc3\xa9", "c9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(baseSpec().with(ext{extALPN, alpnData(tc.proto, "h2")}).bytes())
			if err != nil {
				t.Fatal(err)
			}
			if got := h.JA4[8:10]; got != tc.want {
				t.Errorf("ALPN part of %s = %q, want %q", h.JA4, got, tc.want)
			}
			if h.ALPN[0] != tc.proto {
				t.Errorf("ALPN[0] = %q", h.ALPN[0])
			}
		})
	}
}

// echConfigList builds an ECHConfigList (draft-ietf-tls-esni-22) for an X25519
// HPKE key with the given public name.
func echConfigList(t *testing.T, publicName string) []byte {
	t.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(extEncryptedClientHello)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(7)       // config_id
			b.AddUint16(0x0020) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key.PublicKey().Bytes()) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(0x0001) // HKDF-SHA256
				b.AddUint16(0x0001) // AES-128-GCM
			})
			b.AddUint8(0) // maximum_name_length
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
			b.AddUint16(0) // extensions
		})
	})
	return b.BytesOrPanic()
}

// uHello returns the hello a utls client with the given fingerprint writes.
func uHello(t *testing.T, id utls.ClientHelloID) []byte {
	t.Helper()
	rc := &recordingConn{}
	c := utls.UClient(rc, &utls.Config{ServerName: fixtureName}, id)
	if err := c.Handshake(); err == nil {
		t.Fatal("utls handshake against a recording conn succeeded")
	}
	return rc.bytes()
}

func TestReadGenerated(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hello    func(t *testing.T) []byte
		sni      string
		alpn     []string
		ech      bool
		versions []uint16
		ja4      string // exact, or prefix when it ends with '*'
	}{
		{
			name:     "go with SNI",
			hello:    func(t *testing.T) []byte { return goHello(t, &tls.Config{ServerName: fixtureName}) },
			sni:      fixtureName,
			versions: []uint16{0x0304, 0x0303},
			ja4:      "t13d*",
		},
		{
			name:     "go without SNI",
			hello:    func(t *testing.T) []byte { return goHello(t, &tls.Config{InsecureSkipVerify: true}) },
			versions: []uint16{0x0304, 0x0303},
			ja4:      "t13i*",
		},
		{
			name: "go with ALPN",
			hello: func(t *testing.T) []byte {
				return goHello(t, &tls.Config{ServerName: fixtureName, NextProtos: []string{"h2", "http/1.1"}})
			},
			sni:      fixtureName,
			alpn:     []string{"h2", "http/1.1"},
			versions: []uint16{0x0304, 0x0303},
			ja4:      "t13d*",
		},
		{
			name: "go TLS 1.2 only",
			hello: func(t *testing.T) []byte {
				return goHello(t, &tls.Config{ServerName: fixtureName, MaxVersion: tls.VersionTLS12})
			},
			sni:      fixtureName,
			versions: []uint16{0x0303},
			ja4:      "t12d*",
		},
		{
			name: "go real ECH",
			hello: func(t *testing.T) []byte {
				return goHello(t, &tls.Config{
					ServerName:                     fixtureName,
					EncryptedClientHelloConfigList: echConfigList(t, "public.example.net"),
				})
			},
			sni:      "public.example.net", // the outer hello names the ECH provider
			ech:      true,
			versions: []uint16{0x0304},
			ja4:      "t13d*",
		},
		{
			name:     "utls chrome auto",
			hello:    func(t *testing.T) []byte { return uHello(t, utls.HelloChrome_Auto) },
			sni:      fixtureName,
			alpn:     []string{"h2", "http/1.1"},
			ech:      true, // GREASE ECH
			versions: []uint16{0x0304, 0x0303},
			ja4:      "t13d1516h2_8daaf6152771_d8a2da3f94cd", // published for Chrome
		},
		{
			name:     "utls firefox auto",
			hello:    func(t *testing.T) []byte { return uHello(t, utls.HelloFirefox_Auto) },
			sni:      fixtureName,
			alpn:     []string{"h2", "http/1.1"},
			ech:      true, // GREASE ECH
			versions: []uint16{0x0304, 0x0303},
			ja4:      "t13d*",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.hello(t)
			h, raw, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Equal(raw, data) {
				t.Errorf("raw %d bytes, written %d", len(raw), len(data))
			}
			if h.ServerName != tc.sni || h.HasSNI != (tc.sni != "") {
				t.Errorf("ServerName = %q HasSNI = %v, want %q", h.ServerName, h.HasSNI, tc.sni)
			}
			if !slices.Equal(h.ALPN, tc.alpn) {
				t.Errorf("ALPN = %q, want %q", h.ALPN, tc.alpn)
			}
			if h.ECH != tc.ech {
				t.Errorf("ECH = %v, want %v", h.ECH, tc.ech)
			}
			if !slices.Equal(h.Versions, tc.versions) {
				t.Errorf("Versions = %x, want %x", h.Versions, tc.versions)
			}
			if p, ok := strings.CutSuffix(tc.ja4, "*"); ok {
				if !strings.HasPrefix(h.JA4, p) {
					t.Errorf("JA4 = %s, want prefix %s", h.JA4, p)
				}
			} else if h.JA4 != tc.ja4 {
				t.Errorf("JA4 = %s, want %s", h.JA4, tc.ja4)
			}
			checkJA4(t, h, raw)
		})
	}
}

func TestReadChromePostQuantum(t *testing.T) {
	data := uHello(t, utls.HelloChrome_Auto)
	h, raw, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// X25519MLKEM768 (0x11ec) key share makes the hello larger than 1.5 KB.
	if !bytes.Contains(raw, []byte{0x11, 0xec, 0x04, 0xc0}) {
		t.Error("no X25519MLKEM768 key share (group 0x11ec, 1216 bytes) in the utls Chrome hello")
	}
	if len(raw) < 1500 || !h.ECH {
		t.Errorf("hello %d bytes, ECH %v", len(raw), h.ECH)
	}
}

// writeSlowly writes b one byte per Write, then tail.
func writeSlowly(c net.Conn, b, tail []byte) error {
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	_, err := c.Write(tail)
	return err
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

func TestReadFragmented(t *testing.T) {
	chromium := fixtures(t)["chromium"]
	msgLen := len(chromium) - recordHeaderLen
	for _, tc := range []struct {
		name      string
		recordLen int
		transport string
	}{
		{"1-byte records over TCP", 1, "tcp"},
		{"7-byte records over TCP", 7, "tcp"},
		{"7-byte records over pipe", 7, "pipe"},
		{"1000-byte records over pipe", 1000, "pipe"},
		{"one record over TCP", 1 << 14, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := records(t, chromium, tc.recordLen)
			var client, server net.Conn
			if tc.transport == "tcp" {
				client, server = loopbackPair(t)
			} else {
				client, server = net.Pipe()
				t.Cleanup(func() { client.Close(); server.Close() })
			}
			errc := make(chan error, 1)
			go func() { errc <- writeSlowly(client, data, []byte("X")) }()
			_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
			h, raw, err := Read(server)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			// Read may have read the byte after the hello too; it is in raw then.
			if !bytes.Equal(raw, data) && !bytes.Equal(raw, append(slices.Clone(data), 'X')) {
				t.Fatalf("raw %d bytes, differs from the %d written", len(raw), len(data))
			}
			if h.RawLen != len(data) {
				t.Errorf("RawLen = %d, want %d", h.RawLen, len(data))
			}
			wantRecords := (msgLen + tc.recordLen - 1) / tc.recordLen
			if h.Records != wantRecords {
				t.Errorf("Records = %d, want %d", h.Records, wantRecords)
			}
			if h.ServerName != fixtureName || !h.ECH {
				t.Errorf("hello %+v", h)
			}
			if len(raw) == len(data) {
				next := make([]byte, 1)
				if _, err := io.ReadFull(server, next); err != nil || next[0] != 'X' {
					t.Errorf("byte after the hello: %q, %v (read but not returned?)", next, err)
				}
			}
			if err := <-errc; err != nil {
				t.Errorf("writer: %v", err)
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	chromium := fixtures(t)["chromium"]
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"one record", chromium},
		{"7-byte records", records(t, chromium, 7)},
		{"curl", fixtures(t)["curl"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n := 0; n < len(tc.data); n++ {
				h, raw, err := Read(bytes.NewReader(tc.data[:n]))
				if h != nil || !errors.Is(err, ErrTruncated) {
					t.Fatalf("prefix %d: %v, %v; want ErrTruncated", n, h, err)
				}
				if !bytes.Equal(raw, tc.data[:n]) {
					t.Fatalf("prefix %d: raw %d bytes", n, len(raw))
				}
			}
		})
	}
}

func TestReadNotTLS(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	random := make([]byte, 64)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 0x42
	for _, tc := range []struct {
		name string
		data string
	}{
		{"http", "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"},
		{"http one byte", "G"},
		{"ssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"},
		{"random", string(random)},
		{"sslv2 compatible hello", "\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"},
		{"alert record", "\x15\x03\x03\x00\x02\x02\x28"},
		{"change cipher spec record", "\x14\x03\x03\x00\x01\x01"},
		{"record version major 2", "\x16\x02\x00\x00\x05\x01\x00\x00\x01\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, raw, err := Read(strings.NewReader(tc.data))
			if h != nil || !errors.Is(err, ErrNotTLS) {
				t.Fatalf("Read = %v, %v; want ErrNotTLS", h, err)
			}
			// Every byte read is returned (a CONNECT with tls.non_tls = allow
			// replays them), and no more than one buffer's worth is read.
			if len(raw) > initialRawCap || !strings.HasPrefix(tc.data, string(raw)) {
				t.Errorf("raw = %q", raw)
			}
		})
	}
}

func TestReadMalformedRecords(t *testing.T) {
	msg := message(t, fixtures(t)["curl"])
	half := len(msg) / 2
	twoRecords := append(record(msg[:half]), record(msg[half:])...)
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"zero-length record", append([]byte{22, 3, 1, 0, 0}, record(msg)...), ErrMalformed},
		{"record too long", append([]byte{22, 3, 1, 0x41, 0x01}, msg...), ErrMalformed},
		{"second record zero length", append(append(record(msg[:half]), 22, 3, 1, 0, 0), record(msg[half:])...), ErrMalformed},
		{"alert between records", append(append(record(msg[:half]), 21, 3, 3, 0, 2, 1, 0), record(msg[half:])...), ErrMalformed},
		{"change cipher spec between records", append(append(record(msg[:half]), 20, 3, 3, 0, 1, 1), record(msg[half:])...), ErrMalformed},
		{"second record major version 2", append(record(msg[:half]), append([]byte{22, 2, 1, 0, byte(len(msg) - half)}, msg[half:]...)...), ErrMalformed},
		{"another handshake message in the same record", record(append(slices.Clone(msg), 20, 0, 0, 0)), ErrMalformed},
		{"another handshake message in the last record", append(record(msg[:half]), record(append(slices.Clone(msg[half:]), 11, 0, 0, 0))...), ErrMalformed},
		{"server hello", record(append([]byte{2}, msg[1:]...)), ErrMalformed},
		{"handshake over 16 KiB", record([]byte{1, 0, 0x40, 0x01, 3, 3}), ErrTooLarge},
		{"handshake of 16 MiB", record([]byte{1, 0xff, 0xff, 0xff}), ErrTooLarge},
		{"two records, valid", twoRecords, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, raw, err := Read(bytes.NewReader(tc.data))
			if tc.want == nil {
				if err != nil || h.Records != 2 || h.ServerName != fixtureName {
					t.Fatalf("Read = %+v, %v", h, err)
				}
				return
			}
			if h != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Read = %v, %v; want %v", h, err, tc.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%v is not ErrMalformed", err)
			}
			if !bytes.HasPrefix(tc.data, raw) {
				t.Error("raw is not a prefix of the input")
			}
		})
	}
}

// TestReadTooLargeStopsEarly: a client announcing a huge hello is refused as soon
// as the handshake header arrives, without waiting for the rest.
func TestReadTooLargeStopsEarly(t *testing.T) {
	client, server := loopbackPair(t)
	head := []byte{22, 3, 1, 0x40, 0x00, 1, 0x00, 0xff, 0xff}
	if _, err := client.Write(head); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, raw, err := Read(server)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Read: %v, want ErrTooLarge", err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatal("Read waited for the deadline")
	}
	if !bytes.Equal(raw, head) {
		t.Errorf("raw = %x", raw)
	}
}

func TestReadTimeout(t *testing.T) {
	chromium := fixtures(t)["chromium"]
	for _, tc := range []struct {
		name string
		sent []byte
	}{
		{"nothing sent", nil},
		{"half a header", chromium[:3]},
		{"half the hello", chromium[:len(chromium)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := loopbackPair(t)
			if _, err := client.Write(tc.sent); err != nil {
				t.Fatal(err)
			}
			_ = server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			h, raw, err := Read(server)
			if h != nil || !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read = %v, %v; want ErrTimeout", h, err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("%v does not wrap a net.Error timeout", err)
			}
			if !bytes.HasPrefix(tc.sent, raw) {
				t.Errorf("raw (%d bytes) is not a prefix of what was sent", len(raw))
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	base := baseSpec()
	noExts := base
	noExts.exts = nil
	noExts.noExtBlock = true
	tls12 := base.replace(extSupportedVersions, []byte{2, 0x03, 0x03})
	for _, tc := range []struct {
		name string
		msg  []byte
		want error // nil: must parse
	}{
		{"base", base.bytes(), nil},
		{"no extensions block", noExts.bytes(), nil},
		{"other name type ignored", base.replace(extServerName, sniData(1, "x", 0, fixtureName, 7, "y")).bytes(), nil},
		{"only other name types", base.replace(extServerName, sniData(1, "x")).bytes(), nil},
		{"unknown extension with data", base.with(ext{0x7777, []byte{1, 2, 3}}).bytes(), nil},
		{"tls 1.2 with compression list", func() []byte { s := tls12; s.compression = []byte{1, 0}; return s.bytes() }(), nil},
		{"valid pre_shared_key last", base.with(ext{extPreSharedKey, pskData(1, 1)}).bytes(), nil},
		{"control bytes in name kept", base.replace(extServerName, sniData(0, "a\x01b")).bytes(), nil},

		{"wrong handshake type", func() []byte { s := base; s.msgType = 2; return s.bytes() }(), ErrMalformed},
		{"handshake length short", func() []byte { b := base.bytes(); b[3]--; return b }(), ErrMalformed},
		{"handshake length long", func() []byte { b := base.bytes(); b[3]++; return b }(), ErrMalformed},
		{"trailing handshake bytes", append(base.bytes(), 1, 0, 0, 0), ErrMalformed},
		{"body over 16 KiB", base.with(ext{0x7777, make([]byte, MaxHelloSize)}).bytes(), ErrTooLarge},
		{"session id 33 bytes", func() []byte { s := base; s.sessionID = make([]byte, 33); return s.bytes() }(), ErrMalformed},
		{"odd cipher suites", func() []byte { s := base; s.ciphers = []byte{0x13, 0x01, 0xc0}; return s.bytes() }(), ErrMalformed},
		{"no cipher suites", func() []byte { s := base; s.ciphers = nil; return s.bytes() }(), ErrMalformed},
		{"no null compression", func() []byte { s := tls12; s.compression = []byte{1}; return s.bytes() }(), ErrMalformed},
		{"no compression methods", func() []byte { s := tls12; s.compression = nil; return s.bytes() }(), ErrMalformed},
		{"tls 1.3 with compression", func() []byte { s := base; s.compression = []byte{0, 1}; return s.bytes() }(), ErrMalformed},
		{"bytes after extensions", func() []byte { s := base; s.trailing = []byte{0}; return s.bytes() }(), ErrMalformed},
		{"truncated extension", func() []byte { s := noExts; s.trailing = []byte{0, 3, 0, 0, 0}; return s.bytes() }(), ErrMalformed},

		{"duplicate server_name", base.with(ext{extServerName, sniData(0, "other.example")}).bytes(), ErrDuplicateSNI},
		{"duplicate server_name without host_name first", base.replace(extServerName, sniData(1, "x")).with(ext{extServerName, sniData(1, "y")}).bytes(), ErrDuplicateSNI},
		{"two host_name entries", base.replace(extServerName, sniData(0, fixtureName, 0, "other.example")).bytes(), ErrDuplicateSNI},
		{"trailing dot", base.replace(extServerName, sniData(0, "www.example.com.")).bytes(), ErrMalformed},
		{"empty host_name", base.replace(extServerName, sniData(0, "")).bytes(), ErrMalformed},
		{"empty other name", base.replace(extServerName, sniData(1, "")).bytes(), ErrMalformed},
		{"empty server_name list", base.replace(extServerName, []byte{0, 0}).bytes(), ErrMalformed},
		{"server_name trailing data", base.replace(extServerName, append(sniData(0, fixtureName), 0)).bytes(), ErrMalformed},
		{"duplicate extension", base.with(ext{extExtendedMasterSecret, nil}, ext{extExtendedMasterSecret, nil}).bytes(), ErrMalformed},
		{"duplicate GREASE extension", base.with(ext{0x0a0a, nil}, ext{0x0a0a, nil}).bytes(), ErrMalformed},

		{"status_request trailing data", base.with(ext{extStatusRequest, []byte{1, 0, 0, 0, 0, 9}}).bytes(), ErrMalformed},
		{"status_request truncated", base.with(ext{extStatusRequest, []byte{1, 0, 0}}).bytes(), ErrMalformed},
		{"supported_groups empty", base.with(ext{extSupportedGroups, []byte{0, 0}}).bytes(), ErrMalformed},
		{"supported_groups odd", base.with(ext{extSupportedGroups, []byte{0, 1, 0x1d}}).bytes(), ErrMalformed},
		{"ec_point_formats empty", base.with(ext{extECPointFormats, []byte{0}}).bytes(), ErrMalformed},
		{"signature_algorithms empty", base.replace(extSignatureAlgorithms, []byte{0, 0}).bytes(), ErrMalformed},
		{"signature_algorithms odd", base.replace(extSignatureAlgorithms, []byte{0, 1, 4}).bytes(), ErrMalformed},
		{"signature_algorithms_cert empty", base.with(ext{extSignatureAlgsCert, []byte{0, 0}}).bytes(), ErrMalformed},
		{"renegotiation_info not empty", base.with(ext{extRenegotiationInfo, []byte{1, 0}}).bytes(), ErrMalformed},
		{"renegotiation_info no length", base.with(ext{extRenegotiationInfo, nil}).bytes(), ErrMalformed},
		{"extended_master_secret with data", base.with(ext{extExtendedMasterSecret, []byte{0}}).bytes(), ErrMalformed},
		{"sct with data", base.with(ext{extSCT, []byte{0}}).bytes(), ErrMalformed},
		{"early_data with data", base.with(ext{extEarlyData, []byte{0}}).bytes(), ErrMalformed},
		{"alpn empty list", base.with(ext{extALPN, []byte{0, 0}}).bytes(), ErrMalformed},
		{"alpn empty protocol", base.with(ext{extALPN, alpnData("h2", "")}).bytes(), ErrMalformed},
		{"supported_versions empty", base.replace(extSupportedVersions, []byte{0}).bytes(), ErrMalformed},
		{"supported_versions odd", base.replace(extSupportedVersions, []byte{3, 3, 4, 3}).bytes(), ErrMalformed},
		{"cookie empty", base.with(ext{extCookie, []byte{0, 0}}).bytes(), ErrMalformed},
		{"key_share empty key", base.replace(extKeyShare, []byte{0, 4, 0, 0x1d, 0, 0}).bytes(), ErrMalformed},
		{"key_share truncated", base.replace(extKeyShare, []byte{0, 3, 0, 0x1d, 0}).bytes(), ErrMalformed},
		{"psk_key_exchange_modes bad", base.with(ext{extPSKModes, []byte{3, 1}}).bytes(), ErrMalformed},
		{"pre_shared_key not last", base.with(ext{extPreSharedKey, pskData(1, 1)}, ext{extExtendedMasterSecret, nil}).bytes(), ErrMalformed},
		{"pre_shared_key binders missing", base.with(ext{extPreSharedKey, pskData(1, 0)}).bytes(), ErrMalformed},
		{"pre_shared_key binders differ", base.with(ext{extPreSharedKey, pskData(1, 2)}).bytes(), ErrMalformed},
		{"ech outer", base.with(ext{extEncryptedClientHello, []byte{0, 0, 1, 0, 1, 7, 0, 1, 9, 0, 2, 8, 8}}).bytes(), nil},
		{"ech inner", base.with(ext{extEncryptedClientHello, []byte{1}}).bytes(), nil},
		{"ech empty", base.with(ext{extEncryptedClientHello, nil}).bytes(), ErrMalformed},
		{"ech unknown type", base.with(ext{extEncryptedClientHello, []byte{2}}).bytes(), ErrMalformed},
		{"ech outer without payload", base.with(ext{extEncryptedClientHello, []byte{0, 0, 1, 0, 1, 7, 0, 1, 9}}).bytes(), ErrMalformed},
		{"ech outer payload length past the end", base.with(ext{extEncryptedClientHello, []byte{0, 0, 1, 0, 1, 7, 0, 0, 0, 9, 1}}).bytes(), ErrMalformed},
		{"ech inner not empty", base.with(ext{extEncryptedClientHello, []byte{1, 0}}).bytes(), ErrMalformed},
		{"pre_shared_key empty label", base.with(ext{extPreSharedKey, []byte{0, 6, 0, 0, 0, 0, 0, 0, 0, 2, 1, 9}}).bytes(), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.msg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if _, err := serverView(t, record(tc.msg)); err != nil {
					t.Errorf("crypto/tls refuses what Parse accepts: %v", err)
				}
				return
			}
			if h != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %+v, %v; want %v", h, err, tc.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%v is not ErrMalformed", err)
			}
			// crypto/tls's clientHelloMsg.unmarshal refuses the same hello, except for
			// the checks its server makes later in the handshake and our own limits.
			if !laterChecks[tc.name] && len(tc.msg) <= 1<<14 {
				if info, _ := serverView(t, record(tc.msg)); info != nil {
					t.Errorf("crypto/tls parsed a hello Parse refuses (%v)", err)
				}
			}
			// Through Read too (a length longer than the data is, to Read, a
			// hello still in flight).
			if _, _, rerr := Read(bytes.NewReader(record(tc.msg))); !errors.Is(rerr, tc.want) &&
				!(tc.name == "handshake length long" && errors.Is(rerr, ErrTruncated)) {
				t.Errorf("Read: %v, want %v", rerr, tc.want)
			}
		})
	}
}

// laterChecks names the TestParseMalformed cases that crypto/tls's parser accepts
// and its server refuses later in the handshake (or that only this package
// refuses: session id length, empty cipher list), or, for a length longer than
// the data, waits for more.
var laterChecks = map[string]bool{
	"trailing handshake bytes":      true,
	"handshake length long":         true,
	"session id 33 bytes":           true,
	"no cipher suites":              true,
	"no null compression":           true,
	"no compression methods":        true,
	"tls 1.3 with compression":      true,
	"renegotiation_info not empty":  true,
	"pre_shared_key binders differ": true,
	"ech empty":                     true, // crypto/tls skips an empty encrypted_client_hello
	"body over 16 KiB":              true,
}

// pskData builds a pre_shared_key body with n identities and m binders.
func pskData(n, m int) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for range n {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte("ticket")) })
			b.AddUint32(7)
		}
	})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for range m {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		}
	})
	return b.BytesOrPanic()
}

// TestParseFieldsFromSpec checks the extracted fields, GREASE handling and hellos
// that outgrow Hello's inline storage.
func TestParseFieldsFromSpec(t *testing.T) {
	h, err := Parse(baseSpec().with(ext{extALPN, alpnData("h2")}, ext{0xfafa, nil}, ext{extEncryptedClientHello, []byte{0, 0, 1, 0, 1, 0x42, 0, 0, 0, 1, 0xaa}}).bytes())
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != fixtureName || !h.HasSNI || !h.ECH || !slices.Equal(h.ALPN, []string{"h2"}) ||
		!slices.Equal(h.Versions, []uint16{0x0304, 0x0303}) || h.Records != 0 {
		t.Errorf("%+v", h)
	}
	// GREASE-only supported_versions: Versions empty, JA4 falls back to legacy.
	h, err = Parse(baseSpec().replace(extSupportedVersions, []byte{2, 0x7a, 0x7a}).bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Versions) != 0 || !strings.HasPrefix(h.JA4, "t12d") {
		t.Errorf("Versions %x JA4 %s", h.Versions, h.JA4)
	}
	// More ALPN values and versions than the inline storage holds.
	many := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	vers := []byte{20}
	for i := range 10 {
		vers = append(vers, 3, byte(i))
	}
	h, err = Parse(baseSpec().replace(extSupportedVersions, vers).with(ext{extALPN, alpnData(many...)}).bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.ALPN, many) || len(h.Versions) != 10 {
		t.Errorf("ALPN %q Versions %x", h.ALPN, h.Versions)
	}
}

func TestWriteAlert(t *testing.T) {
	for _, tc := range []struct {
		name string
		desc uint8
		msg  string
	}{
		{"access denied", AlertAccessDenied, "access denied"},
		{"decode error", AlertDecodeError, "error decoding message"},
		{"internal error", AlertInternalError, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteAlert(&buf, tc.desc); err != nil {
				t.Fatal(err)
			}
			if want := []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, tc.desc}; !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("alert bytes % x, want % x", buf.Bytes(), want)
			}

			// A real Go client: the proxy reads its hello and answers with the alert.
			client, server := loopbackPair(t)
			done := make(chan error, 1)
			go func() {
				_ = server.SetDeadline(time.Now().Add(30 * time.Second))
				if _, _, err := Read(server); err != nil {
					done <- err
					return
				}
				done <- WriteAlert(server, tc.desc)
			}()
			_ = client.SetDeadline(time.Now().Add(30 * time.Second))
			err := tls.Client(client, &tls.Config{ServerName: fixtureName}).Handshake()
			if werr := <-done; werr != nil {
				t.Fatalf("server side: %v", werr)
			}
			if err == nil || !strings.Contains(err.Error(), "remote error: tls: "+tc.msg) {
				t.Errorf("client error %q, want remote error %q", err, tc.msg)
			}
		})
	}
}

// errReader returns its error after the data.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadOtherErrors(t *testing.T) {
	boom := errors.New("connection reset")
	_, raw, err := Read(&errReader{data: []byte{22, 3}, err: boom})
	if !errors.Is(err, boom) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v", err)
	}
	if !bytes.Equal(raw, []byte{22, 3}) {
		t.Errorf("raw = %x", raw)
	}
	// A reader that never makes progress is abandoned.
	_, _, err = Read(&errReader{err: nil})
	if !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}

func BenchmarkRead(b *testing.B) {
	data := fixtures(b)["chromium"]
	r := bytes.NewReader(data)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r.Reset(data)
		if _, _, err := Read(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data := fixtures(b)["chromium"][recordHeaderLen:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
