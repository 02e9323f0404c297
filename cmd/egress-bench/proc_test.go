package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// writeProc makes a fake /proc entry: a stat line and a status with VmRSS.
func writeProc(t *testing.T, root string, pid, ppid int, utime, stime, cutime, cstime, rssKB int64) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (proc (x)) S " + strconv.Itoa(ppid) +
		" 1 1 0 -1 4194560 100 0 0 0 " +
		strconv.FormatInt(utime, 10) + " " + strconv.FormatInt(stime, 10) + " " +
		strconv.FormatInt(cutime, 10) + " " + strconv.FormatInt(cstime, 10) + " 20 0 7 0 123 456 789\n"
	status := "Name:\tproc\nVmRSS:\t" + strconv.FormatInt(rssKB, 10) + " kB\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The proxy's CPU and RSS are those of its whole process tree: its own
// threads, the children it reaped, its live children and grandchildren;
// not its parent, siblings or unrelated processes.
func TestProcessTreeFixture(t *testing.T) {
	root := t.TempDir()
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })

	writeProc(t, root, 1, 0, 1000, 1000, 0, 0, 9000)  // init: not counted
	writeProc(t, root, 100, 1, 200, 100, 7, 3, 50000) // the proxy (reaped 10)
	writeProc(t, root, 101, 100, 20, 10, 0, 0, 4000)  // a helper
	writeProc(t, root, 102, 101, 5, 5, 1, 1, 1000)    // the helper's child
	writeProc(t, root, 103, 100, 0, 0, 0, 0, 0)       // a zombie child
	os.Remove(filepath.Join(root, "103", "status"))
	writeProc(t, root, 200, 1, 500, 500, 0, 0, 7000) // unrelated
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	os.MkdirAll(filepath.Join(root, "300"), 0o755) // vanished: no stat
	os.WriteFile(filepath.Join(root, "301"), []byte("not a dir"), 0o644)

	tree, err := processTree(100)
	if err != nil || len(tree) != 4 || tree[0] != 100 {
		t.Fatalf("tree %v, %v", tree, err)
	}
	cpu, err := readCPU(100)
	// 300+10 (proxy) + 30 (helper) + 10+2 (grandchild) + 0 (zombie) = 352 ticks.
	if want := 352 * time.Second / clockTicks; err != nil || cpu != want {
		t.Fatalf("readCPU = %v, %v; want %v", cpu, err, want)
	}
	rss, err := readRSS(100)
	if err != nil || rss != 55000 {
		t.Fatalf("readRSS = %d, %v; want 55000", rss, err)
	}
	if _, err := readCPU(999); err == nil {
		t.Fatal("readCPU of a missing pid succeeded")
	}
}

// A live child's CPU counts toward its parent's: this test process starts
// a shell that burns CPU and then waits, and the CPU read for this
// process must include the shell's.
func TestReadCPUCountsChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 20`)
	if err := cmd.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	child := cmd.Process.Pid

	// Poll (bounded) until the child has used at least 20 ticks (200 ms).
	var childCPU time.Duration
	for deadline := time.Now().Add(25 * time.Second); ; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		ps, err := parseStat(string(b))
		if err != nil {
			t.Fatal(err)
		}
		childCPU = time.Duration(ps.self) * time.Second / clockTicks
		if childCPU >= 200*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Skipf("the child used only %v of CPU in 25 s (machine too busy)", childCPU)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	own, err := parseStat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	total, err := readCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ownCPU := time.Duration(own.self) * time.Second / clockTicks
	if total < ownCPU+childCPU {
		t.Fatalf("readCPU(self) = %v, less than own %v + child %v", total, ownCPU, childCPU)
	}
}

func TestParseMachineCPU(t *testing.T) {
	stat := "cpu  100 5 50 800 20 0 15 10 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	busy, total, err := parseMachineCPU(stat)
	// busy = user+nice+system+irq+softirq+steal = 100+5+50+0+15+10; guest (7) is inside user.
	if err != nil || busy != 180 || total != 1000 {
		t.Fatalf("busy %d total %d, %v; want 180 1000", busy, total, err)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x"} {
		if _, _, err := parseMachineCPU(bad); err == nil {
			t.Errorf("parseMachineCPU(%q) accepted", bad)
		}
	}
}

// A quiet run reports a share of other work; the meter never reports a
// negative share.
func TestCPUMeter(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat")
	}
	m, err := startCPUMeter(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
	}
	proxy, other, err := m.stop()
	if err != nil || proxy < 0 || other < 0 || other > 100 {
		t.Fatalf("proxy %v other %v%%, %v", proxy, other, err)
	}
}
