package transparent

import (
	"net"
	"testing"
	"time"
)

// A connection that no NAT rule redirected (a client that dialed the
// listener itself, or TPROXY) was going to the listener's own address.
func TestOriginalDstWithoutNAT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := originalDst(s); got.String() != ln.Addr().String() {
		t.Fatalf("originalDst = %v, want %v", got, ln.Addr())
	}
	// Not a TCP connection: the listener's address is all there is.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := originalDst(a); got.IsValid() {
		t.Fatalf("originalDst of a pipe = %v", got)
	}
}
