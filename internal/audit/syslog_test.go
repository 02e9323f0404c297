package audit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// selfSigned makes a CA-less self-signed server certificate for 127.0.0.1 and
// the name "syslog.test", and returns it with its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "syslog.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"syslog.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// clientCertificate makes a self-signed client certificate (ClientAuth) and
// returns its PEM, its key's PEM and a pool that trusts it.
func clientCertificate(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "egress-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}

// frame is one RFC 5424 message as received.
type frame struct {
	pri, version, timestamp, hostname, app, procid, msgid, sd, msg string
}

func parse5424(t *testing.T, m string) frame {
	t.Helper()
	p := strings.SplitN(m, " ", 8)
	if len(p) != 8 || !strings.HasPrefix(p[0], "<") {
		t.Fatalf("not an RFC 5424 message: %q", m)
	}
	end := strings.IndexByte(p[0], '>')
	if end < 0 {
		t.Fatalf("no PRI in %q", m)
	}
	return frame{pri: p[0][1:end], version: p[0][end+1:], timestamp: p[1], hostname: p[2], app: p[3],
		procid: p[4], msgid: p[5], sd: p[6], msg: p[7]}
}

// receiver is a syslog receiver on loopback (TCP, or TLS when cfg is set) that
// reads RFC 6587 octet-counted frames from every connection.
type receiver struct {
	t      *testing.T
	ln     net.Listener
	frames chan string
	errs   chan error
	done   chan struct{} // closed by kill
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startReceiver(t *testing.T, addr string, cfg *tls.Config) *receiver {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	r := &receiver{t: t, ln: ln, frames: make(chan string, 4096), errs: make(chan error, 16), done: make(chan struct{})}
	r.wg.Go(r.accept)
	t.Cleanup(r.kill)
	return r
}

func (r *receiver) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
		r.wg.Go(func() { r.read(c) })
	}
}

// read parses "LEN SP MSG" frames.
func (r *receiver) read(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		n := 0
		for digits := 0; ; digits++ {
			b, err := br.ReadByte()
			if err != nil {
				if digits > 0 {
					r.report(fmt.Errorf("eof inside a frame length"))
				}
				return
			}
			if b == ' ' && digits > 0 {
				break
			}
			if b < '0' || b > '9' || digits > 7 || (digits == 0 && b == '0') {
				r.report(fmt.Errorf("bad octet count byte %q", b))
				return
			}
			n = n*10 + int(b-'0')
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return // the connection was cut inside the frame (receiver killed)
		}
		select {
		case r.frames <- string(msg):
		case <-r.done:
			return
		}
	}
}

func (r *receiver) report(err error) {
	select {
	case r.errs <- err:
	default:
	}
}

// kill closes the listener and every connection, as a crashing receiver would.
func (r *receiver) kill() {
	r.once.Do(func() { close(r.done) })
	_ = r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *receiver) next(t *testing.T, bound time.Duration) string {
	t.Helper()
	select {
	case m := <-r.frames:
		return m
	case err := <-r.errs:
		t.Fatalf("receiver: %v", err)
	case <-time.After(bound):
		t.Fatalf("no frame within %v", bound)
	}
	return ""
}

func checkFrame(t *testing.T, f frame, e *Event) {
	t.Helper()
	wantPri := map[string]string{"deny": "132", "allow": "134"}[e.Action]
	if f.pri != wantPri || f.version != "1" || f.app != "egress" || f.sd != "-" ||
		f.procid != strconv.Itoa(os.Getpid()) || f.hostname != syslogHostname(mustHostname()) || f.msgid != e.Action {
		t.Errorf("header %+v: want PRI %s, version 1, app egress, SD -, procid %d, host %s, msgid %s",
			f, wantPri, os.Getpid(), syslogHostname(mustHostname()), e.Action)
	}
	ts, err := time.Parse(time.RFC3339Nano, f.timestamp)
	if err != nil || !ts.Equal(e.Time.Truncate(time.Microsecond)) || len(f.timestamp) > len("2006-01-02T15:04:05.000000Z") {
		t.Errorf("timestamp %q (%v), want %v with at most 6 fraction digits", f.timestamp, err, e.Time)
	}
}

func TestSyslog(t *testing.T) {
	cert, certPEM := selfSigned(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	allow, deny := testEvent("id-allow"), testEvent("id-deny")
	deny.Action, deny.Reason = "deny", "rule"

	type tc struct {
		name   string
		scheme string
		server *tls.Config
		opts   Options
		format string
	}
	for _, c := range []tc{
		{name: "tcp", scheme: "syslog+tcp", format: "ecs"},
		{name: "tcp-cef", scheme: "syslog+tcp", format: "cef"},
		{name: "tls-rootcas", scheme: "syslog+tls", server: serverTLS, format: "ecs",
			opts: Options{TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}},
		{name: "tls-cafile-servername", scheme: "syslog+tls", server: serverTLS, format: "cef",
			opts: Options{TLSCAFile: caFile, TLSServerName: "syslog.test"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startReceiver(t, "127.0.0.1:0", c.server)
			o := c.opts
			o.Format, o.Output, o.Version = c.format, c.scheme+"://"+r.ln.Addr().String(), testVersion
			l, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.Log(allow)
			l.Log(deny)
			for _, e := range []*Event{allow, deny} {
				f := parse5424(t, r.next(t, 10*time.Second))
				checkFrame(t, f, e)
				checkMsg(t, c.format, f.msg, e)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if l.Dropped() != 0 {
				t.Fatalf("dropped %d", l.Dropped())
			}
		})
	}

	t.Run("tls-wrong-name", func(t *testing.T) {
		r := startReceiver(t, "127.0.0.1:0", serverTLS)
		var logs lockedBuffer
		l, err := New(Options{Format: "ecs", Output: "syslog+tls://" + r.ln.Addr().String(), TLSCAFile: caFile,
			TLSServerName: "other.test", Log: slog.New(slog.NewTextHandler(&logs, nil)), FlushTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		l.Log(allow)
		waitFor(t, 10*time.Second, "a logged certificate error", func() bool {
			return strings.Contains(logs.String(), "certificate")
		})
		_ = l.Close()
		if l.Dropped() != 1 {
			t.Fatalf("dropped %d, want 1", l.Dropped())
		}
		select {
		case m := <-r.frames:
			t.Fatalf("receiver got %q over an unverified connection", m)
		default:
		}
	})

	// A receiver that requires a client certificate refuses its absence under
	// TLS 1.3 only after egress's side of the handshake is complete: the dial
	// waits for that verdict, so the refusal is a logged failed connection and
	// the events stay queued instead of being written into a dead session.
	t.Run("tls13-client-certificate-required", func(t *testing.T) {
		clientPEM, keyPEM, clientPool := clientCertificate(t)
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
		if err := os.WriteFile(certFile, clientPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		strict := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}

		r := startReceiver(t, "127.0.0.1:0", strict)
		var logs lockedBuffer
		l, err := New(Options{Format: "ecs", Output: "syslog+tls://" + r.ln.Addr().String(), TLSCAFile: caFile,
			TLSServerName: "syslog.test", Log: slog.New(slog.NewTextHandler(&logs, nil)), FlushTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		l.Log(allow)
		waitFor(t, 10*time.Second, "the refusal logged as a failed connection", func() bool {
			return strings.Contains(logs.String(), "cannot connect to syslog receiver") &&
				strings.Contains(logs.String(), "client certificate refused")
		})
		if n := l.Dropped(); n != 0 {
			t.Fatalf("%d events dropped while the receiver refuses the session; want them still queued", n)
		}
		_ = l.Close()

		l, err = New(Options{Format: "ecs", Output: "syslog+tls://" + r.ln.Addr().String(), TLSCAFile: caFile,
			TLSServerName: "syslog.test", TLSCertFile: certFile, TLSKeyFile: keyFile, Version: testVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		l.Log(deny)
		checkFrame(t, parse5424(t, r.next(t, 10*time.Second)), deny)
	})

	t.Run("udp", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		l, err := New(Options{Format: "ecs", Output: "syslog+udp://" + pc.LocalAddr().String(), Version: testVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		l.Log(allow)
		l.Log(deny)
		buf := make([]byte, 65536)
		for _, e := range []*Event{allow, deny} {
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			f := parse5424(t, string(buf[:n]))
			checkFrame(t, f, e)
			checkMsg(t, "ecs", f.msg, e)
		}
	})
}

func checkMsg(t *testing.T, format, msg string, e *Event) {
	t.Helper()
	switch format {
	case "ecs":
		got, err := ParseECS([]byte(msg))
		if err != nil || got.ID != e.ID || got.Action != e.Action {
			t.Fatalf("MSG %q: %v", msg, err)
		}
	case "cef":
		_, ext, err := parseCEF(msg)
		if err != nil || ext["cs5"] != e.ID || ext["act"] != e.Action {
			t.Fatalf("MSG %q: %v", msg, err)
		}
	}
}

// The receiver dies under load and comes back on the same port: Log never
// blocks, drops are counted, the sink says so and delivery resumes.
func TestSyslogTCPReceiverRestart(t *testing.T) {
	const (
		maxLogCall = 2 * time.Second // generous: a busy 2-core machine
		outage     = maxLogCall + 500*time.Millisecond
	)
	r := startReceiver(t, "127.0.0.1:0", nil)
	addr := r.ln.Addr().String()
	var logs lockedBuffer
	var onDrop atomic.Uint64
	l, err := New(Options{
		Format: "ecs", Output: "syslog+tcp://" + addr, QueueSize: 512,
		OnDrop: func() { onDrop.Add(1) },
		Log:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	l.Log(testEvent("first"))
	if m := parse5424(t, r.next(t, 10*time.Second)); !strings.Contains(m.msg, `"id":"first"`) {
		t.Fatalf("first frame: %q", m.msg)
	}

	// Load: goroutines log continuously and record the slowest Log call.
	stop := make(chan struct{})
	var slowest atomic.Int64
	var calls atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			e := testEvent("")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e.ID = fmt.Sprintf("load-%d-%d", g, i)
				start := time.Now()
				l.Log(e)
				d := int64(time.Since(start))
				calls.Add(1)
				for {
					s := slowest.Load()
					if d <= s || slowest.CompareAndSwap(s, d) {
						break
					}
				}
				if i%16 == 0 {
					time.Sleep(time.Millisecond) // leave the CPUs to the sink and the receiver
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	waitFor(t, 10*time.Second, "frames under load", func() bool { return len(r.frames) > 100 })
	// Frames were whole up to the kill; after it, a frame cut in half by the
	// kill itself is expected, so the first receiver's errors end here.
	select {
	case err := <-r.errs:
		t.Fatalf("first receiver: %v", err)
	default:
	}
	r.kill()
	killed := time.Now()
	waitFor(t, 20*time.Second, "drops while the receiver is down", func() bool { return l.Dropped() > 0 })
	waitFor(t, 10*time.Second, "the sink to log the lost connection", func() bool {
		return strings.Contains(logs.String(), "syslog connection lost")
	})

	// Stay down longer than the bound on one Log call, so that a Log waiting
	// on the sink would show.
	time.Sleep(time.Until(killed.Add(outage)))
	r2 := startReceiver(t, addr, nil)
	waitFor(t, 30*time.Second, "delivery to the restarted receiver", func() bool { return len(r2.frames) > 0 })
	stopLoad()

	// Everything logged from now on arrives: the queue drains, then the marker.
	l.Log(testEvent("marker"))
	deadline := time.After(30 * time.Second)
	for found := false; !found; {
		select {
		case m := <-r2.frames:
			found = strings.Contains(parse5424(t, m).msg, `"id":"marker"`)
		case err := <-r2.errs:
			t.Fatalf("receiver: %v", err)
		case <-deadline:
			t.Fatal("marker not delivered after the receiver came back")
		}
	}
	if got := time.Duration(slowest.Load()); got > maxLogCall {
		t.Fatalf("slowest of %d Log calls took %v", calls.Load(), got)
	}
	if onDrop.Load() != l.Dropped() {
		t.Fatalf("OnDrop called %d times, Dropped() = %d", onDrop.Load(), l.Dropped())
	}
	if !strings.Contains(logs.String(), "connected to syslog receiver") {
		t.Fatalf("no reconnect in the process log:\n%s", logs.String())
	}
	t.Logf("%d Log calls, slowest %v, %d dropped", calls.Load(), time.Duration(slowest.Load()), l.Dropped())
	if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// A receiver that accepts but never reads: Close still returns within the flush
// timeout, counting what it could not deliver.
func TestSyslogCloseWithStalledReceiver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	l, err := New(Options{Format: "ecs", Output: "syslog+tcp://" + ln.Addr().String(), FlushTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent("stalled")
	e.URLPath = strings.Repeat("x", MaxFieldLen)
	for range 20000 { // ~60 MB: more than the socket buffers hold
		l.Log(e)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if l.Dropped() == 0 {
		t.Fatal("nothing counted as dropped although the receiver never read")
	}
}

// mustHostname is the default Options.Hostname.
func mustHostname() string {
	h, _ := os.Hostname()
	return h
}
