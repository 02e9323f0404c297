package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileHTTPVersions attacks the 505 for request lines in another
// HTTP major version than 1, on the real binary: the HTTP/2 preface
// followed by 64 KiB of frames (too much), an HTTP/2.0 request line sent a
// byte at a time (too slowly), an HTTP/2.0 request pipelined after a good
// one (out of order), and a CONNECT in HTTP/0.9 sent twice in one write.
// Each gets exactly the answers it should (200 for the good request, one
// 505) and then the close, nothing of a 505'd request reaches the origin,
// a normal client is served meanwhile, and afterwards the process holds no
// more descriptors and goroutines than before.
func TestHostileHTTPVersions(t *testing.T) {
	o := hxNewOrigin(t, "origin", "127.0.0.1", 0, true)
	p := Start(t, hxConf{Hosts: hxHosts("allowed.test")}.String(), nil)
	hostPort := fmt.Sprintf("allowed.test:%d", o.Port)
	base := hxResources(t, p)

	frames := make([]byte, 64<<10) // SETTINGS, then zeros: junk frames
	copy(frames, "\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	good := "GET http://" + hostPort + "/good HTTP/1.1\r\nHost: " + hostPort + "\r\n\r\n"
	attacks := []struct {
		name  string
		send  func(c net.Conn) error
		codes []int // the answers, in order, before the close
	}{
		{"h2 preface and 64 KiB of frames", func(c net.Conn) error {
			_, err := c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frames...))
			return err
		}, []int{505}},
		{"HTTP/2.0 a byte at a time", func(c net.Conn) error {
			for _, b := range []byte("GET http://" + hostPort + "/slow HTTP/2.0\r\nHost: " + hostPort + "\r\n\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		}, []int{505}},
		{"HTTP/2.0 pipelined after a good request", func(c net.Conn) error {
			_, err := io.WriteString(c, good+"GET http://"+hostPort+"/second HTTP/2.0\r\nHost: "+hostPort+"\r\n\r\n")
			return err
		}, []int{200, 505}},
		{"CONNECT in HTTP/0.9, twice in one write", func(c net.Conn) error {
			req := "CONNECT " + hostPort + " HTTP/0.9\r\nHost: " + hostPort + "\r\n\r\n"
			_, err := io.WriteString(c, req+req)
			return err
		}, []int{505}},
	}
	const rounds = 8
	var wg sync.WaitGroup
	errs := make(chan error, rounds*len(attacks))
	for r := 0; r < rounds; r++ {
		for _, a := range attacks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", p.ProxyAddr)
				if err != nil {
					errs <- fmt.Errorf("%s: dial: %w", a.name, err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(15 * time.Second))
				sendErr := make(chan error, 1)
				go func() { sendErr <- a.send(c) }()
				br := bufio.NewReader(c)
				for _, want := range a.codes {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("%s: reading the %d: %w", a.name, want, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want || resp.Proto != "HTTP/1.1" {
						errs <- fmt.Errorf("%s: %d in %s, want %d in HTTP/1.1", a.name, resp.StatusCode, resp.Proto, want)
						return
					}
				}
				if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
					errs <- fmt.Errorf("%s: after the 505: %v, want the close", a.name, err)
				}
				<-sendErr // the write may fail: the proxy closed first
			}()
		}
	}
	hxAlive(t, p, "http://"+hostPort+"/during", hostPort)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	raw := o.Raw()
	if strings.Contains(raw, "/slow") || strings.Contains(raw, "/second") || strings.Contains(raw, "PRI") {
		t.Errorf("a request answered 505 reached the origin:\n%s", hxTail(raw, 2000))
	}
	if n := bytes.Count([]byte(raw), []byte("GET /good ")); n != rounds {
		t.Errorf("the origin saw %d good requests, want %d", n, rounds)
	}
	hxWaitSettled(t, p, base, 8, 8, 10*time.Second)
	hxNoPanics(t, p)
	hxAlive(t, p, "http://"+hostPort+"/after", hostPort)
}
