package dnscache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Wire limits. A reply is read into a buffer of maxMessage bytes; EDNS0
// advertises udpSize, the size that avoids IP fragmentation (DNS flag day
// 2020). At most maxAddrs addresses of one name are kept, and a CNAME chain
// is followed for at most maxChain names.
const (
	udpSize    = 1232
	maxMessage = 65535
	maxAddrs   = 32
	maxChain   = 8
)

// errServer: the server did not answer usably (SERVFAIL, REFUSED, a reply
// that does not parse or does not match the question). The next server is
// tried.
var errServer = errors.New("dns server failure")

// answer is what the A and AAAA queries of one name returned.
type answer struct {
	addrs []netip.Addr
	// ttl is how long the answer may be kept: the smallest TTL of the
	// records it was built from (for a negative answer, of the SOA record,
	// RFC 2308). 0: not at all.
	ttl time.Duration
	// notFound: the name does not exist (NXDOMAIN) or has no address
	// (NODATA for both types).
	notFound bool
}

// oneType is the reply to one query type.
type oneType struct {
	addrs     []netip.Addr
	ttl       uint32
	rcode     dnsmessage.RCode
	truncated bool
	hasTTL    bool // a negative reply carried an SOA, so ttl is its TTL
}

// query builds the query for name and type t, with a two-byte length prefix
// in front (used over TCP, skipped over UDP).
func query(id uint16, name dnsmessage.Name, t dnsmessage.Type) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 2, 64+len(name.String())), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: t, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var rh dnsmessage.ResourceHeader
	if err := rh.SetEDNS0(udpSize, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(rh, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	msg, err := b.Finish()
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
	return msg, nil
}

// parseReply reads a reply to the query (id, q). Records are taken only for
// q's name and the names its CNAMEs lead to, so a server cannot plant an
// address for another name. Every malformed or mismatched reply is
// errServer.
func parseReply(msg []byte, id uint16, q dnsmessage.Question) (oneType, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return oneType{}, fmt.Errorf("%w: %v", errServer, err)
	}
	if !h.Response || h.ID != id {
		return oneType{}, fmt.Errorf("%w: reply does not match the query", errServer)
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || qs[0].Type != q.Type || qs[0].Class != q.Class ||
		!strings.EqualFold(qs[0].Name.String(), q.Name.String()) {
		return oneType{}, fmt.Errorf("%w: reply is for another question", errServer)
	}
	r := oneType{rcode: h.RCode, truncated: h.Truncated}
	if h.Truncated || (h.RCode != dnsmessage.RCodeSuccess && h.RCode != dnsmessage.RCodeNameError) {
		return r, nil
	}
	// The names that count: q's and the CNAME targets reached from it, in
	// order. Answers normally list the chain first; a second pass takes
	// records listed before the CNAME that leads to them.
	chain := []string{strings.ToLower(q.Name.String())}
	inChain := func(s string) bool {
		for _, c := range chain {
			if strings.EqualFold(c, s) {
				return true
			}
		}
		return false
	}
	type rec struct {
		h     dnsmessage.ResourceHeader
		addr  netip.Addr
		cname string
	}
	var recs []rec
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return oneType{}, fmt.Errorf("%w: %v", errServer, err)
		}
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeA:
			var a dnsmessage.AResource
			if a, err = p.AResource(); err == nil {
				recs = append(recs, rec{h: rh, addr: netip.AddrFrom4(a.A)})
			}
		case rh.Type == dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			if a, err = p.AAAAResource(); err == nil {
				recs = append(recs, rec{h: rh, addr: netip.AddrFrom16(a.AAAA)})
			}
		case rh.Type == dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			if c, err = p.CNAMEResource(); err == nil {
				recs = append(recs, rec{h: rh, cname: c.CNAME.String()})
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			return oneType{}, fmt.Errorf("%w: %v", errServer, err)
		}
	}
	for grew := true; grew && len(chain) < maxChain; {
		grew = false
		for _, x := range recs {
			if x.cname != "" && inChain(x.h.Name.String()) && !inChain(x.cname) {
				chain = append(chain, x.cname)
				grew = true
				if len(chain) == maxChain {
					break
				}
			}
		}
	}
	for _, x := range recs {
		if !inChain(x.h.Name.String()) {
			continue
		}
		if x.cname != "" || x.addr.Is4() == (q.Type == dnsmessage.TypeA) {
			r.take(x.h.TTL)
		}
		if x.addr.IsValid() && x.addr.Is4() == (q.Type == dnsmessage.TypeA) && len(r.addrs) < maxAddrs {
			r.addrs = append(r.addrs, x.addr)
		}
	}
	if len(r.addrs) > 0 {
		return r, nil
	}
	// Negative: the SOA in the authority section says how long it holds.
	r.ttl, r.hasTTL = 0, false
	for {
		rh, err := p.AuthorityHeader()
		if err != nil { // ErrSectionDone, or a section that does not parse: no TTL
			break
		}
		if rh.Type != dnsmessage.TypeSOA {
			if p.SkipAuthority() != nil {
				break
			}
			continue
		}
		soa, err := p.SOAResource()
		if err != nil {
			break
		}
		r.ttl, r.hasTTL = min(rh.TTL, soa.MinTTL), true
		break
	}
	return r, nil
}

// take keeps the smallest TTL seen.
func (r *oneType) take(ttl uint32) {
	if !r.hasTTL || ttl < r.ttl {
		r.ttl, r.hasTTL = ttl, true
	}
}

// exchange asks server for name's A and AAAA records: both queries over
// one UDP socket, a truncated reply again over TCP. It returns errServer
// (or a network error) when this server gave no usable answer.
func exchange(ctx context.Context, server netip.AddrPort, name string, attempt time.Duration) (answer, error) {
	qname, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return answer{}, &net.DNSError{Err: "invalid name", Name: name, IsNotFound: true}
	}
	types := [2]dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA}
	var ids [2]uint16
	var msgs [2][]byte
	for i, t := range types {
		ids[i] = uint16(rand.Uint32()) // math/rand/v2's global source is ChaCha8, seeded from the OS
		if msgs[i], err = query(ids[i], qname, t); err != nil {
			return answer{}, &net.DNSError{Err: "invalid name", Name: name, IsNotFound: true}
		}
	}
	deadline := time.Now().Add(attempt)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var got [2]*oneType
	c, err := dialServer(ctx, "udp", server, deadline)
	if err != nil {
		return answer{}, err
	}
	defer c.Close()
	for i := range msgs {
		if _, err := c.Write(msgs[i][2:]); err != nil {
			return answer{}, err
		}
	}
	buf := make([]byte, udpSize+512) // a larger reply is cut, parses as malformed, is ignored; TCP is for TC
	for got[0] == nil || got[1] == nil {
		n, err := c.Read(buf)
		if err != nil {
			return answer{}, err
		}
		for i := range types {
			if got[i] != nil || n < 2 || binary.BigEndian.Uint16(buf) != ids[i] {
				continue
			}
			r, err := parseReply(buf[:n], ids[i], dnsmessage.Question{Name: qname, Type: types[i], Class: dnsmessage.ClassINET})
			if err != nil {
				continue // a stray or forged datagram: keep waiting for the real reply
			}
			if r.truncated {
				if r, err = overTCP(ctx, server, deadline, msgs[i], ids[i], dnsmessage.Question{Name: qname, Type: types[i], Class: dnsmessage.ClassINET}); err != nil {
					return answer{}, err
				}
			}
			got[i] = &r
		}
	}
	return combine(*got[0], *got[1])
}

// dialServer connects to a DNS server; every read and write on the
// connection ends by deadline (the lookup's own, set when its query
// started, so nothing waits past it).
func dialServer(ctx context.Context, network string, server netip.AddrPort, deadline time.Time) (net.Conn, error) {
	c, err := (&net.Dialer{Deadline: deadline}).DialContext(ctx, network, server.String())
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// overTCP repeats one query over TCP (RFC 7766), after a truncated reply.
func overTCP(ctx context.Context, server netip.AddrPort, deadline time.Time, msg []byte, id uint16, q dnsmessage.Question) (oneType, error) {
	c, err := dialServer(ctx, "tcp", server, deadline)
	if err != nil {
		return oneType{}, err
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return oneType{}, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return oneType{}, err
	}
	reply := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, reply); err != nil {
		return oneType{}, err
	}
	r, err := parseReply(reply, id, q)
	if err == nil && r.truncated {
		err = fmt.Errorf("%w: truncated over TCP", errServer)
	}
	return r, err
}

// combine makes one answer of the A and AAAA replies. NXDOMAIN in either
// means the name does not exist. A server failure on one type still gives
// the other type's addresses, kept no longer than a negative answer.
func combine(a, aaaa oneType) (answer, error) {
	ok := func(r oneType) bool {
		return r.rcode == dnsmessage.RCodeSuccess || r.rcode == dnsmessage.RCodeNameError
	}
	if a.rcode == dnsmessage.RCodeNameError || aaaa.rcode == dnsmessage.RCodeNameError {
		neg := a
		if a.rcode != dnsmessage.RCodeNameError {
			neg = aaaa
		}
		return answer{notFound: true, ttl: seconds(neg.ttl, neg.hasTTL)}, nil
	}
	addrs := append(append([]netip.Addr(nil), a.addrs...), aaaa.addrs...)
	switch {
	case ok(a) && ok(aaaa) && len(addrs) > 0:
		ttl := min(seconds(a.ttl, a.hasTTL), seconds(aaaa.ttl, aaaa.hasTTL))
		if len(a.addrs) == 0 {
			ttl = seconds(aaaa.ttl, aaaa.hasTTL) // the empty type's TTL is its SOA's
		} else if len(aaaa.addrs) == 0 {
			ttl = seconds(a.ttl, a.hasTTL)
		}
		return answer{addrs: addrs, ttl: ttl}, nil
	case ok(a) && ok(aaaa):
		return answer{notFound: true, ttl: min(seconds(a.ttl, a.hasTTL), seconds(aaaa.ttl, aaaa.hasTTL))}, nil
	case len(addrs) > 0:
		t := a
		if len(a.addrs) == 0 {
			t = aaaa
		}
		return answer{addrs: addrs, ttl: min(seconds(t.ttl, t.hasTTL), partialTTL)}, nil
	}
	return answer{}, fmt.Errorf("%w: %v / %v", errServer, a.rcode, aaaa.rcode)
}

// partialTTL bounds how long an answer whose other type failed is kept, so
// the failed type is asked again soon.
const partialTTL = 5 * time.Second

func seconds(ttl uint32, has bool) time.Duration {
	if !has {
		return 0
	}
	return time.Duration(ttl) * time.Second
}
