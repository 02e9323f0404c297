package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStdoutReaderGone: events on stdout go to a pipe whose reader (a log
// shipper, the container runtime) goes away. The process does not die of
// SIGPIPE (it did: exit status 141 at the first event after the reader
// left): the events are dropped and counted, the failure is logged once,
// and the proxy goes on deciding.
func TestStdoutReaderGone(t *testing.T) {
	var (
		p      *Proc
		cmd    *exec.Cmd
		r      *os.File
		stderr *lockedBuffer
		exited chan error
	)
	// Ports from fillPorts were free a moment ago; another package's test
	// may take one first: retried with new ones (bounded).
	for attempt := 1; ; attempt++ {
		cfg, addrs := fillPorts(t, opsCfg("blocked.test", ""))
		path := filepath.Join(t.TempDir(), "egress.hcl")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var w *os.File
		var err error
		if r, w, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		stderr = &lockedBuffer{}
		cmd = exec.Command(binary, "run", "-config", path)
		cmd.Stdout, cmd.Stderr = w, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close() // the child holds the only write end
		exited = make(chan error, 1)
		thisCmd, thisExited := cmd, exited
		go func() { thisExited <- thisCmd.Wait() }()
		t.Cleanup(func() {
			thisCmd.Process.Kill()
			select {
			case <-thisExited:
			case <-time.After(10 * time.Second):
			}
		})
		p = &Proc{t: t, ProxyAddr: addrs["PROXY"], AdminAddr: addrs["ADMIN"], exited: make(chan struct{})}
		if p.WaitReady(15 * time.Second) {
			break
		}
		if attempt == 3 || !strings.Contains(stderr.String(), "address already in use") {
			t.Fatalf("not ready\n%s", stderr.String())
		}
		cmd.Process.Kill()
		r.Close()
	}
	if code := connectCode(t, p, "blocked.test:443"); code != 403 {
		t.Fatalf("before: %d", code)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, `"blocked.test"`) {
		t.Fatalf("first event: %q, %v", line, err)
	}
	r.Close() // the reader goes away

	for i := 0; i < 20; i++ {
		select {
		case err := <-exited:
			t.Fatalf("egress exited after its stdout reader left: %v\n%s", err, stderr.String())
		default:
		}
		if code := connectCode(t, p, "blocked.test:443"); code != 403 {
			t.Fatalf("CONNECT %d after the reader left: %d", i, code)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, p, "egress_log_events_dropped_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("events written to a gone reader not counted as dropped\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "broken pipe") || strings.Count(stderr.String(), "cannot write events") != 1 {
		t.Fatalf("the failure is not logged once:\n%s", stderr.String())
	}
	select {
	case err := <-exited:
		t.Fatalf("egress exited: %v\n%s", err, stderr.String())
	default:
	}
}
