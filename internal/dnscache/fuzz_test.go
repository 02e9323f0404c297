package dnscache

import (
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzParseReply: any bytes a server (or a forger) sends parse into at
// most maxAddrs addresses of the asked type, or an error; never a panic.
func FuzzParseReply(f *testing.F) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("www.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	for _, r := range [][]byte{
		reply(f, 7, q, "cdn.example", 60),
		reply(f, 7, q, "", 0),
		{0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0},
	} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := parseReply(msg, 7, q)
		if err != nil {
			return
		}
		if len(r.addrs) > maxAddrs {
			t.Fatalf("%d addresses", len(r.addrs))
		}
		for _, a := range r.addrs {
			if !a.Is4() {
				t.Fatalf("AAAA %v in an A answer", a)
			}
		}
	})
}

// reply builds a reply to q: a CNAME to cname (when set) and two A records.
func reply(f *testing.F, id uint16, q dnsmessage.Question, cname string, ttl uint32) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	owner := q.Name
	if cname != "" {
		target := dnsmessage.MustNewName(cname + ".")
		b.CNAMEResource(dnsmessage.ResourceHeader{Name: owner, Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.CNAMEResource{CNAME: target})
		owner = target
	}
	for _, a := range [][4]byte{{192, 0, 2, 1}, {192, 0, 2, 2}} {
		b.AResource(dnsmessage.ResourceHeader{Name: owner, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.AResource{A: a})
	}
	msg, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	return msg
}

// FuzzSystemFiles: any resolv.conf or hosts text parses within the bounds
// the lookups rely on.
func FuzzSystemFiles(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.53\nsearch a.example b.example\noptions ndots:5 timeout:2 attempts:3\n"))
	f.Add([]byte("127.0.0.1 localhost\n::1 localhost ip6-localhost\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := parseResolvConf(data)
		if len(c.servers) > 3 || c.ndots > 15 || c.attempts < 1 || c.attempts > 5 || c.timeout < time.Second || c.timeout > 30*time.Second {
			t.Fatalf("%+v", c)
		}
		for _, addrs := range parseHosts(data) {
			if len(addrs) == 0 || len(addrs) > maxAddrs {
				t.Fatalf("%d addresses", len(addrs))
			}
		}
	})
}
