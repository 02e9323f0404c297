package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Figures for the QUIC listener (not assertions). Run with
//
//	EGRESS_MEASURE=1 go test ./internal/e2e -run TestMeasureQUIC -v
//
// New QUIC flows per second, one after another (each a new client socket,
// so a new flow: a full handshake with a post-quantum ClientHello over two
// Initial packets, then CONNECTION_CLOSE), straight to a quic-go origin and
// through the egress QUIC listener, alternating rounds so that neither
// path always runs on a warmer machine; and egress's CPU time per flow
// (/proc/<pid>/stat), which includes the flow's end after idle_timeout.

func TestMeasureQUIC(t *testing.T) {
	measureOnly(t)
	const (
		rounds = 4
		flows  = 150 // per round and path
	)
	ca := NewCA(t)
	origin := newQUICOrigin(t, ca, false, "allowed.test")
	p, listen := startQUIC(t, origin.Port, `limits {
  idle_timeout    = "1s"
  per_source      = 100000
  max_connections = 100000
}`)
	pid := p.cmd.Process.Pid
	direct := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: origin.Port}
	via, _ := net.ResolveUDPAddr("udp", listen)
	tlsConf := &tls.Config{ServerName: "allowed.test", RootCAs: ca.Pool, NextProtos: []string{http3.NextProtoH3}}
	handshakes := func(target *net.UDPAddr) time.Duration {
		start := time.Now()
		for range flows {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			tr := &quic.Transport{Conn: pc}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			conn, err := tr.Dial(ctx, target, tlsConf, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			cancel()
			if err != nil {
				t.Fatalf("handshake to %v: %v", target, err)
			}
			conn.CloseWithError(0, "")
			tr.Close()
			pc.Close()
		}
		return time.Since(start)
	}
	var dDirect, dEgress, cpu time.Duration
	ended := 0
	for r := range rounds {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, viaEgress := range order {
			if !viaEgress {
				dDirect += handshakes(direct)
				continue
			}
			c0 := procCPU(t, pid)
			dEgress += handshakes(via)
			// Let the round's flows reach their idle end: their teardown
			// is part of their cost. Polled on the events (egress's
			// stdout), not on /metrics, which would cost egress CPU.
			ended += flows
			deadline := time.Now().Add(15 * time.Second)
			for len(quicEvents(p)) < ended && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			cpu += procCPU(t, pid) - c0
		}
	}
	n := float64(rounds * flows)
	t.Logf("QUIC new flows, %d rounds of %d, sequential", rounds, flows)
	t.Logf("direct: %.0f flows/s (%.2f ms each)", n/dDirect.Seconds(), dDirect.Seconds()*1000/n)
	t.Logf("egress: %.0f flows/s (%.2f ms each), proxy CPU %.0f µs/flow", n/dEgress.Seconds(), dEgress.Seconds()*1000/n, float64(cpu.Microseconds())/n)
	t.Logf("events: %d", len(quicEvents(p)))
}
