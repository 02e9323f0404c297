package dnstest

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func ask(t *testing.T, name string, id uint16) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// udp sends one query and returns every datagram that comes back within
// wait.
func udp(t *testing.T, s *Server, name string, id uint16, wait time.Duration) [][]byte {
	t.Helper()
	c, err := net.Dial("udp", s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(ask(t, name, id))
	c.SetReadDeadline(time.Now().Add(wait))
	var got [][]byte
	for {
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		got = append(got, buf[:n])
	}
}

func header(t *testing.T, msg []byte) (dnsmessage.Header, []dnsmessage.Resource) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return m.Header, m.Answers
}

// The server answers from its table, NXDOMAIN otherwise, and counts.
func TestAnswers(t *testing.T) {
	s := Start(t)
	s.Set("a.example", Record{Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, TTL: 30})
	got := udp(t, s, "a.example", 7, 300*time.Millisecond)
	if len(got) != 1 {
		t.Fatalf("%d replies", len(got))
	}
	h, ans := header(t, got[0])
	if h.ID != 7 || !h.Response || len(ans) != 1 || ans[0].Header.TTL != 30 ||
		ans[0].Body.(*dnsmessage.AResource).A != [4]byte{192, 0, 2, 1} {
		t.Fatalf("%+v %+v", h, ans)
	}
	got = udp(t, s, "unknown.example", 8, 300*time.Millisecond)
	if h, _ := header(t, got[0]); h.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("unknown name: %v", h.RCode)
	}
	if s.Queries("a.example") != 1 || s.Queries("unknown.example") != 1 {
		t.Fatal("queries not counted")
	}
}

// The hostile behaviours do what they say.
func TestHostile(t *testing.T) {
	s := Start(t)
	a := netip.MustParseAddr("192.0.2.1")
	s.Set("junk.example", Record{Addrs: []netip.Addr{a}, Garbage: 3, Twice: true, Forged: netip.MustParseAddr("198.51.100.1")})
	got := udp(t, s, "junk.example", 9, 300*time.Millisecond)
	if len(got) != 6 { // 3 junk, 1 forged, the answer twice
		t.Fatalf("%d datagrams, want 6", len(got))
	}
	if h, _ := header(t, got[3]); h.ID != 10 {
		t.Fatalf("forged reply has ID %d, want 10", h.ID)
	}
	if h, _ := header(t, got[5]); h.ID != 9 {
		t.Fatalf("answer has ID %d", h.ID)
	}

	s.Set("big.example", Record{Addrs: []netip.Addr{a}, Truncate: true, Many: 200})
	got = udp(t, s, "big.example", 11, 300*time.Millisecond)
	if h, ans := header(t, got[0]); !h.Truncated || len(ans) != 0 {
		t.Fatalf("UDP: truncated %v with %d answers", h.Truncated, len(ans))
	}
	c, err := net.Dial("tcp", s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := ask(t, "big.example", 12)
	c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var l [2]byte
	io.ReadFull(c, l[:])
	reply := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatal(err)
	}
	if _, ans := header(t, reply); len(ans) != 201 {
		t.Fatalf("TCP: %d answers, want 201", len(ans))
	}
	if s.TCPQueries() != 1 {
		t.Fatalf("%d TCP queries", s.TCPQueries())
	}
}
