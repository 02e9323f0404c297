package memconn

import (
	"io"
	"net"
	"testing"
	"time"
)

// Half-close: after a's CloseWrite, b reads EOF and can still write to a.
func TestHalfClose(t *testing.T) {
	a, b := Pair(&net.TCPAddr{Port: 1}, &net.TCPAddr{Port: 2})
	defer a.Close()
	defer b.Close()
	if a.LocalAddr().(*net.TCPAddr).Port != 1 || b.RemoteAddr().(*net.TCPAddr).Port != 1 {
		t.Fatal("addresses")
	}
	go func() {
		a.Write([]byte("hi"))
		a.CloseWrite()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hi" {
		t.Fatalf("b read %q, %v", got, err)
	}
	go func() { b.Write([]byte("back")); b.Close() }()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(a); err != nil || string(got) != "back" {
		t.Fatalf("a read %q, %v", got, err)
	}
}
