//go:build linux

package tunnel

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMeasureOrphanLifetime (EGRESS_MEASURE_ORPHAN=1, a few minutes): how
// long the kernel keeps a closed socket whose peer keeps its window closed
// (and answers the window probes, as a live peer that stops reading does),
// without TCP_USER_TIMEOUT: what a tunnel closed before its watchdog's first
// look leaves behind (see orphanLimit, userTimeoutAtStart). The socket is
// watched in /proc/net/tcp until it is gone.
//
//	EGRESS_MEASURE_ORPHAN=1 go test ./internal/tunnel -run TestMeasureOrphanLifetime -count=1 -v -timeout 15m
func TestMeasureOrphanLifetime(t *testing.T) {
	if os.Getenv("EGRESS_MEASURE_ORPHAN") == "" {
		t.Skip("SKIP: set EGRESS_MEASURE_ORPHAN=1 to measure")
	}
	reader, writer := pair(t) // reader never reads
	defer reader.Close()
	port := writer.LocalAddr().(*net.TCPAddr).Port
	buf := make([]byte, 64<<10)
	// Fill the reader's window and the writer's send queue.
	for {
		writer.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := writer.Write(buf); err != nil {
			break
		}
	}
	start := time.Now()
	writer.Close() // an orphan with bytes queued towards a closed window
	for {
		state, ok := tcpState(t, port)
		if !ok {
			t.Logf("orphan with queued bytes towards a closed window gone after %v (orphanLimit %v)", time.Since(start).Round(time.Second), orphanLimit)
			if time.Since(start) > orphanLimit {
				t.Errorf("the kernel kept the orphan longer than orphanLimit")
			}
			return
		}
		if time.Since(start) > 2*orphanLimit {
			t.Fatalf("orphan still there (state %s) after %v", state, time.Since(start))
		}
		time.Sleep(time.Second)
	}
}

// tcpState returns the state (hex, as in /proc/net/tcp) of the IPv4 socket
// with local port port, and whether there is one.
func tcpState(t *testing.T, port int) (string, bool) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && strings.HasSuffix(fields[1], want) {
			return fields[3], true
		}
	}
	return "", false
}
