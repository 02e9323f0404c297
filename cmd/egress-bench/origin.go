package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// smallBody is what the origin answers to a GET.
const smallBody = "ok\n"

// bulkVerb starts the throughput exchange: "BULK <n>\n", then n bytes each way.
const bulkVerb = "BULK "

// origin is the in-process destination: a TLS server for a name whose
// certificate is signed by a CA generated at start, and a plain HTTP server.
// Both answer GET with a tiny response; the TLS one also does BULK.
type origin struct {
	tlsLn  net.Listener
	httpLn net.Listener
	server *tls.Config
	roots  *x509.CertPool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newCA returns a fresh CA and a leaf for name signed by it.
func newCA(name string) (leaf tls.Certificate, roots *x509.CertPool, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return leaf, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egress-bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return leaf, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return leaf, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return leaf, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return leaf, nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots, nil
}

// startOrigin listens on tlsAddr and httpAddr (loopback) and serves until close.
func startOrigin(name, tlsAddr, httpAddr string) (*origin, error) {
	leaf, roots, err := newCA(name)
	if err != nil {
		return nil, err
	}
	o := &origin{
		roots:  roots,
		server: &tls.Config{Certificates: []tls.Certificate{leaf}, SessionTicketsDisabled: true},
		conns:  map[net.Conn]struct{}{},
	}
	if o.tlsLn, err = net.Listen("tcp", tlsAddr); err != nil {
		return nil, fmt.Errorf("origin TLS listener: %w", err)
	}
	if o.httpLn, err = net.Listen("tcp", httpAddr); err != nil {
		o.tlsLn.Close()
		return nil, fmt.Errorf("origin HTTP listener: %w", err)
	}
	o.wg.Add(2)
	go o.acceptLoop(o.tlsLn, true)
	go o.acceptLoop(o.httpLn, false)
	return o, nil
}

func (o *origin) acceptLoop(ln net.Listener, useTLS bool) {
	defer o.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		o.mu.Lock()
		o.conns[c] = struct{}{}
		o.mu.Unlock()
		o.wg.Add(1)
		go o.serveConn(c, useTLS)
	}
}

// serveConn answers GETs (keep-alive unless the client says close) and BULK.
func (o *origin) serveConn(raw net.Conn, useTLS bool) {
	defer o.wg.Done()
	defer func() {
		raw.Close()
		o.mu.Lock()
		delete(o.conns, raw)
		o.mu.Unlock()
	}()
	var c net.Conn = raw
	if useTLS {
		tc := tls.Server(raw, o.server)
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		raw.SetDeadline(time.Time{})
		c = tc
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if n, ok := strings.CutPrefix(line, bulkVerb); ok {
			size, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
			if err != nil || size < 0 {
				return
			}
			serveBulk(c, br, size)
			return
		}
		closeAfter := false
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if h == "\r\n" || h == "\n" {
				break
			}
			if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "connection") &&
				strings.EqualFold(strings.TrimSpace(v), "close") {
				closeAfter = true
			}
		}
		resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
			strconv.Itoa(len(smallBody)) + "\r\n"
		if closeAfter {
			resp += "Connection: close\r\n"
		}
		if _, err := io.WriteString(c, resp+"\r\n"+smallBody); err != nil || closeAfter {
			return
		}
	}
}

// serveBulk reads size bytes and writes size bytes at the same time.
func serveBulk(c net.Conn, br *bufio.Reader, size int64) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.CopyN(io.Discard, br, size)
	}()
	writeN(c, size)
	<-done
}

var bulkBuf = make([]byte, 64<<10)

// writeN writes n bytes from a shared read-only buffer.
func writeN(w io.Writer, n int64) error {
	for n > 0 {
		chunk := bulkBuf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		m, err := w.Write(chunk)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// close stops the listeners, closes every connection and waits.
func (o *origin) close() {
	o.tlsLn.Close()
	o.httpLn.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}
