//go:build linux

package tunnel

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMeasureStuckTunnels (EGRESS_MEASURE_STUCK=1): 50 tunnels whose client
// never reads while the origin writes as fast as it can. Once no origin
// write has completed for a second, it reports the kernel socket memory
// they hold: the whole host's TCP "mem" pages from /proc/net/sockstat (on
// loopback that includes the client's and the origin's sockets) and the
// proxy's own sockets alone, from SO_MEMINFO (receive queue + send queue).
//
//	EGRESS_MEASURE_STUCK=1 go test ./internal/tunnel -run TestMeasureStuckTunnels -count=1 -v
func TestMeasureStuckTunnels(t *testing.T) {
	if os.Getenv("EGRESS_MEASURE_STUCK") == "" {
		t.Skip("SKIP: set EGRESS_MEASURE_STUCK=1 to measure")
	}
	const n = 50
	base := sockstatTCPMem(t)
	var written atomic.Int64
	var proxySide []*net.TCPConn
	var ends []net.Conn
	for i := 0; i < n; i++ {
		client, proxyClient := pair(t)
		proxyServer, server := pair(t)
		proxySide = append(proxySide, proxyClient, proxyServer)
		ends = append(ends, client, server)
		Start(proxyClient, proxyServer, Options{Idle: 10 * time.Minute})
		go func() {
			buf := bytes.Repeat([]byte("x"), 64<<10)
			for {
				k, err := server.Write(buf)
				written.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range ends {
			c.Close()
		}
	}()
	// Settle: no origin write completed for a second (bounded).
	deadline := time.Now().Add(60 * time.Second)
	last, lastChange := written.Load(), time.Now()
	for time.Since(lastChange) < time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("origins still writing after 60 s (%d bytes): the tunnels are not stuck", written.Load())
		}
		time.Sleep(100 * time.Millisecond)
		if w := written.Load(); w != last {
			last, lastChange = w, time.Now()
		}
	}
	host := sockstatTCPMem(t) - base
	var rq, wq int64
	for _, c := range proxySide {
		r, w := meminfo(t, c)
		rq += r
		wq += w
	}
	t.Logf("%d stuck tunnels: origins wrote %.1f MB; host TCP mem +%.1f MB (%.2f MB per tunnel); "+
		"proxy sockets: receive queues %.2f MB, send queues %.2f MB (%.2f MB per tunnel)",
		n, float64(last)/1e6, float64(host)/1e6, float64(host)/1e6/n,
		float64(rq)/1e6, float64(wq)/1e6, float64(rq+wq)/1e6/n)
	fmt.Printf("MEASURE stuck=%d host_tcp_mem_per_tunnel_MB=%.2f proxy_sockets_per_tunnel_MB=%.3f\n",
		n, float64(host)/1e6/n, float64(rq+wq)/1e6/n)
}

// sockstatTCPMem is the host's TCP "mem" from /proc/net/sockstat, in bytes.
func sockstatTCPMem(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, _ := strconv.ParseInt(f[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	t.Fatal("no TCP mem in /proc/net/sockstat")
	return 0
}

// meminfo returns a socket's receive-queue and send-queue bytes (SO_MEMINFO).
func meminfo(t *testing.T, c *net.TCPConn) (rmem, wqueued int64) {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info [unix.SK_MEMINFO_VARS]uint32
	var serr error
	rc.Control(func(fd uintptr) {
		l := uint32(len(info) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
		}
	})
	if serr != nil {
		return 0, 0 // closed
	}
	return int64(info[unix.SK_MEMINFO_RMEM_ALLOC]), int64(info[unix.SK_MEMINFO_WMEM_QUEUED])
}

// kernelAtLeast reports whether the running Linux kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}
