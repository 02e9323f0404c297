package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of one iteration.
var (
	errConnectStatus = errors.New("CONNECT not answered as expected")
	errBadResponse   = errors.New("unexpected origin response")
	errShortTransfer = errors.New("short transfer")
)

// dialer opens connections to the origin along the configured path.
type dialer struct {
	cfg        *config
	roots      *x509.CertPool
	originTLS  string
	originHTTP string
}

// bufferedConn keeps bytes the CONNECT response reader read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// tunnel returns a raw connection whose next bytes reach the TLS origin.
func (d *dialer) tunnel(via Via, deadline time.Time) (net.Conn, error) {
	addr := d.cfg.proxy
	if via == ViaDirect {
		addr = d.originTLS
	}
	c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if via != ViaConnect {
		return c, nil
	}
	br, err := askConnect(c, net.JoinHostPort(d.cfg.name, originPort(d.originTLS)), http.StatusOK)
	if err != nil {
		return nil, err
	}
	if br.Buffered() == 0 {
		return c, nil
	}
	return &bufferedConn{Conn: c, r: br}, nil
}

// askConnect sends a CONNECT for target on c and reads the answer's head,
// which must have status want; br holds what was read past it. On an error
// c is closed.
func askConnect(c net.Conn, target string, want int) (br *bufio.Reader, err error) {
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		return nil, err
	}
	br = bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%w: %s, want %d", errConnectStatus, resp.Status, want)
	}
	return br, nil
}

// unidentified returns a connection to the proxy that sent a CONNECT
// without credentials and was answered 407, kept open (-via unidentified).
func (d *dialer) unidentified(deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", d.cfg.proxy, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if _, err := askConnect(c, net.JoinHostPort(d.cfg.name, "443"), http.StatusProxyAuthRequired); err != nil {
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// tlsClient is a full handshake every time: no session cache.
func (d *dialer) tlsClient(raw net.Conn) *tls.Conn {
	return tls.Client(raw, &tls.Config{ServerName: d.cfg.name, RootCAs: d.roots})
}

// tlsGet is one iteration of connect, transparent and direct: a new
// tunnel, a TLS handshake and one GET with Connection: close.
func (d *dialer) tlsGet(via Via) error {
	raw, err := d.tunnel(via, time.Now().Add(d.cfg.timeout))
	if err != nil {
		return err
	}
	defer raw.Close()
	tc := d.tlsClient(raw)
	if err := tc.Handshake(); err != nil {
		return err
	}
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+d.cfg.name+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(tc, 1024), nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != smallBody {
		return fmt.Errorf("%w: %s", errBadResponse, resp.Status)
	}
	return nil
}

// httpConn is one keep-alive client connection of the http mode.
type httpConn struct {
	c  net.Conn
	br *bufio.Reader
}

// httpGet sends one absolute-URI GET on hc, dialing the proxy if needed;
// with -via direct, an origin-form GET straight to the origin (the
// baseline).
func (d *dialer) httpGet(hc *httpConn) error {
	deadline := time.Now().Add(d.cfg.timeout)
	direct := d.cfg.path() == ViaDirect
	if hc.c == nil {
		addr := d.cfg.proxy
		if direct {
			addr = d.originHTTP
		}
		c, err := net.DialTimeout("tcp", addr, d.cfg.timeout)
		if err != nil {
			return err
		}
		hc.c, hc.br = c, bufio.NewReaderSize(c, 4096)
	}
	fail := func(err error) error {
		hc.c.Close()
		hc.c = nil
		return err
	}
	hc.c.SetDeadline(deadline)
	host := net.JoinHostPort(d.cfg.name, originPort(d.originHTTP))
	target := "http://" + host + "/"
	if direct {
		target = "/"
	}
	if _, err := io.WriteString(hc.c, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(hc.br, nil)
	if err != nil {
		return fail(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != smallBody {
		return fail(fmt.Errorf("%w: %s", errBadResponse, resp.Status))
	}
	if resp.Close {
		hc.c.Close()
		hc.c = nil
	}
	return nil
}

// load runs c workers until the duration or the iteration cap, and fills
// rate, latency percentiles and (with -pid) proxy CPU per iteration.
func (d *dialer) load(res *result) error {
	c := d.cfg
	res.Concurrency = c.conc
	meter, err := startCPUMeter(c.pid)
	if err != nil {
		return err
	}
	var (
		issued   atomic.Int64
		errs     atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(c.dur)
	for w := 0; w < c.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			hc := &httpConn{}
			defer func() {
				if hc.c != nil {
					hc.c.Close()
				}
			}()
			for time.Now().Before(end) && issued.Add(1) <= c.maxIter {
				t0 := time.Now()
				var err error
				if c.mode == ModeHTTP {
					err = d.httpGet(hc)
				} else {
					err = d.tlsGet(c.path())
				}
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.OK = int64(len(all))
	res.Errors = errs.Load()
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	res.Rate = float64(res.OK) / elapsed.Seconds()
	l := summarize(all)
	res.Latency = &l
	proxyCPU, other, err := meter.stop()
	if err != nil {
		return err
	}
	if other >= 0 {
		res.OtherCPUPct = &other
	}
	if c.pid > 0 && res.OK > 0 {
		res.CPUPerIterUS = float64(proxyCPU) / float64(time.Microsecond) / float64(res.OK)
	}
	return nil
}

// throughput sends and receives -bytes over one TLS tunnel at the same time;
// MB/s is the bytes carried in both directions together (2 × -bytes, in
// 10^6 bytes) per second of the whole exchange.
func (d *dialer) throughput(res *result) error {
	c := d.cfg
	res.Bytes = c.bytes
	deadline := time.Now().Add(c.dur)
	raw, err := d.tunnel(c.via, deadline)
	if err != nil {
		return err
	}
	defer raw.Close()
	tc := d.tlsClient(raw)
	if err := tc.Handshake(); err != nil {
		return err
	}
	meter, err := startCPUMeter(c.pid)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := fmt.Fprintf(tc, "%s%d\n", bulkVerb, c.bytes); err != nil {
		return err
	}
	readDone := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, tc, c.bytes)
		readDone <- n
	}()
	werr := writeN(tc, c.bytes)
	n := <-readDone
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	proxyCPU, other, err := meter.stop()
	if err != nil {
		return err
	}
	if other >= 0 {
		res.OtherCPUPct = &other
	}
	if c.pid > 0 {
		res.CPUPerMBUS = float64(proxyCPU) / float64(time.Microsecond) / (2 * float64(c.bytes) / 1e6)
	}
	if werr != nil || n != c.bytes {
		res.Errors = 1
		res.FirstError = fmt.Sprintf("%v: read %d of %d (write: %v)", errShortTransfer, n, c.bytes, werr)
		return nil
	}
	res.OK = 1
	res.MBps = 2 * float64(c.bytes) / 1e6 / elapsed.Seconds()
	return nil
}

// idle opens -tunnels TLS tunnels with -c workers, waits -settle, reads the
// proxy's VmRSS and reports the growth per tunnel, then closes them.
func (d *dialer) idle(res *result) error {
	c := d.cfg
	before, err := readRSS(c.pid)
	if err != nil {
		return err
	}
	res.RSSBeforeKB = before
	var (
		next     atomic.Int64
		errs     atomic.Int64
		mu       sync.Mutex
		held     []net.Conn
		firstErr error
		wg       sync.WaitGroup
	)
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	start := time.Now()
	end := start.Add(c.dur)
	for w := 0; w < c.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && next.Add(1) <= int64(c.tunnels) {
				deadline := time.Now().Add(c.timeout)
				if c.via == ViaUnidentified {
					raw, err := d.unidentified(deadline)
					if err == nil {
						mu.Lock()
						held = append(held, raw)
						mu.Unlock()
						continue
					}
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				raw, err := d.tunnel(c.via, deadline)
				if err == nil {
					tc := d.tlsClient(raw)
					if err = tc.Handshake(); err == nil {
						raw.SetDeadline(time.Time{})
						mu.Lock()
						held = append(held, tc)
						mu.Unlock()
						continue
					}
					raw.Close()
				}
				if errs.Add(1) == 1 {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	time.Sleep(c.settle)
	after, err := readRSS(c.pid)
	if err != nil {
		return err
	}
	res.RSSAfterKB = after
	res.Tunnels = len(held)
	res.OK = int64(len(held))
	res.Errors = errs.Load()
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	if len(held) > 0 {
		res.RSSPerTunnelKB = float64(after-before) / float64(len(held))
	}
	return nil
}
