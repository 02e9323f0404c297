// Package dnstest is a DNS server for tests: UDP and TCP on one loopback
// port, answering from a table set by the test, counting the queries it
// gets. It never forwards a query anywhere.
package dnstest

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Record is how the server answers one name.
type Record struct {
	Addrs []netip.Addr // A and AAAA records (each query gets its type)
	TTL   uint32
	// CNAME, when set, is answered first; the addresses are then records
	// of the CNAME's target.
	CNAME string
	// NX answers NXDOMAIN; with no Addrs and not NX the answer is NODATA.
	// SOAMin, when set, puts an SOA with that minimum in a negative answer.
	NX     bool
	SOAMin uint32
	// RCode, when set (e.g. dnsmessage.RCodeServerFailure), is the answer.
	RCode dnsmessage.RCode
	// Truncate answers over UDP with TC set and no records (TCP then
	// gets the whole answer).
	Truncate bool
	// Delay holds each answer back; Drop never answers.
	Delay time.Duration
	Drop  bool
	// Foreign is an extra A record for another name, which a resolver must
	// not take.
	Foreign netip.Addr
	// Forged, when set, is sent first in a reply with the wrong ID.
	Forged netip.Addr
	// Hostile servers: Garbage datagrams of random bytes before the
	// answer, the answer sent Twice, Many extra A records (a reply larger
	// than the EDNS0 size asked for, over UDP too), and over TCP a length
	// prefix and then nothing (TCPStall).
	Garbage  int
	Twice    bool
	Many     int
	TCPStall bool
}

// Server answers queries on Addr until the test ends.
type Server struct {
	Addr netip.AddrPort

	mu      sync.Mutex
	zone    map[string]Record
	queries map[string]int
	tcp     atomic.Int32

	inflight, maxInflight atomic.Int32
}

// Start starts a server on 127.0.0.1 (a free port, the same for UDP and
// TCP); t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s := &Server{Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), zone: map[string]Record{}, queries: map[string]int{}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.serveUDP(pc) }()
	go func() { defer wg.Done(); s.serveTCP(ln) }()
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	return s
}

// Set makes name (no trailing dot) answer with r.
func (s *Server) Set(name string, r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[strings.ToLower(name)] = r
}

// Queries is how many queries (any type, UDP or TCP) name has had.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(name)]
}

// TCPQueries is how many queries came over TCP.
func (s *Server) TCPQueries() int { return int(s.tcp.Load()) }

// MaxInFlight is the most queries the server held at once (Delay, Drop).
func (s *Server) MaxInFlight() int { return int(s.maxInflight.Load()) }

func (s *Server) serveUDP(pc net.PacketConn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, out := range s.answer(buf[:n], true) {
				pc.WriteTo(out, from)
			}
		}()
	}
}

func (s *Server) serveTCP(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			q := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, q); err != nil {
				return
			}
			s.tcp.Add(1)
			for _, out := range s.answer(q, false) {
				if out == nil {
					c.Write([]byte{0x04, 0x00}) // 1024 bytes announced, none sent
					time.Sleep(3 * time.Second)
					return
				}
				binary.BigEndian.PutUint16(l[:], uint16(len(out)))
				c.Write(append(l[:], out...))
			}
		}()
	}
}

// answer builds the replies to one query (none: dropped).
func (s *Server) answer(q []byte, udp bool) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	question := qs[0]
	name := strings.TrimSuffix(strings.ToLower(question.Name.String()), ".")
	s.mu.Lock()
	s.queries[name]++
	r, known := s.zone[name]
	s.mu.Unlock()
	if !known {
		r = Record{NX: true}
	}
	if n := s.inflight.Add(1); n > s.maxInflight.Load() {
		s.maxInflight.Store(n) // racy max; good enough for a bound check
	}
	defer s.inflight.Add(-1)
	if r.Delay > 0 {
		time.Sleep(r.Delay)
	}
	if r.Drop {
		time.Sleep(2 * time.Second)
		return nil
	}
	var outs [][]byte
	for i := range r.Garbage {
		junk := make([]byte, 12+i%500)
		rand.Read(junk)
		outs = append(outs, junk)
	}
	if r.Forged.IsValid() {
		outs = append(outs, build(h.ID+1, question, Record{Addrs: []netip.Addr{r.Forged}, TTL: 3600}, false))
	}
	if !udp && r.TCPStall {
		return append(outs, nil) // nil: the TCP server writes a length and stops
	}
	ans := build(h.ID, question, r, udp && r.Truncate)
	outs = append(outs, ans)
	if r.Twice {
		outs = append(outs, ans)
	}
	return outs
}

func build(id uint16, q dnsmessage.Question, r Record, truncate bool) []byte {
	h := dnsmessage.Header{ID: id, Response: true, RecursionDesired: true, RecursionAvailable: true, RCode: r.RCode, Truncated: truncate}
	if r.NX {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if truncate || h.RCode != dnsmessage.RCodeSuccess && !r.NX {
		msg, _ := b.Finish()
		return msg
	}
	rh := func(name dnsmessage.Name, t dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Type: t, Class: dnsmessage.ClassINET, TTL: r.TTL}
	}
	owner := q.Name
	if r.CNAME != "" && !r.NX {
		target := dnsmessage.MustNewName(r.CNAME + ".")
		b.CNAMEResource(rh(owner, dnsmessage.TypeCNAME), dnsmessage.CNAMEResource{CNAME: target})
		owner = target
	}
	n := 0
	for _, a := range r.Addrs {
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			b.AResource(rh(owner, dnsmessage.TypeA), dnsmessage.AResource{A: a.As4()})
			n++
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			b.AAAAResource(rh(owner, dnsmessage.TypeAAAA), dnsmessage.AAAAResource{AAAA: a.As16()})
			n++
		}
	}
	for i := range r.Many {
		if q.Type == dnsmessage.TypeA {
			b.AResource(rh(owner, dnsmessage.TypeA), dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(i)}})
			n++
		}
	}
	if r.Foreign.IsValid() && q.Type == dnsmessage.TypeA {
		b.AResource(rh(dnsmessage.MustNewName("foreign.example."), dnsmessage.TypeA), dnsmessage.AResource{A: r.Foreign.As4()})
	}
	if n == 0 && r.SOAMin > 0 {
		b.StartAuthorities()
		b.SOAResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("example."), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: 3600},
			dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.example."), MBox: dnsmessage.MustNewName("hostmaster.example."),
				Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: r.SOAMin})
	}
	msg, _ := b.Finish()
	return msg
}
