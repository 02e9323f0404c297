package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors of /proc parsing.
var (
	errNoVmRSS   = errors.New("no VmRSS line in /proc/PID/status")
	errBadStat   = errors.New("malformed /proc/PID/stat")
	errNoSamples = errors.New("no samples")
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be sorted ascending.
func percentile(sorted []time.Duration, p float64) (time.Duration, error) {
	if len(sorted) == 0 {
		return 0, errNoSamples
	}
	if p <= 0 || p > 100 {
		return 0, fmt.Errorf("percentile %v out of (0, 100]", p)
	}
	// Nearest rank: the smallest value with at least p% of samples at or below it.
	rank := int((p/100)*float64(len(sorted)) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1], nil
}

// latencies is the p50/p90/p99/max of a run, in milliseconds for JSON.
type latencies struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summarize sorts samples in place and returns their percentiles.
func summarize(samples []time.Duration) latencies {
	if len(samples) == 0 {
		return latencies{}
	}
	slices.Sort(samples)
	ms := func(p float64) float64 {
		d, _ := percentile(samples, p)
		return float64(d) / float64(time.Millisecond)
	}
	return latencies{P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100)}
}

// parseVmRSS returns VmRSS in KiB from the text of /proc/PID/status.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: %q", errNoVmRSS, sc.Text())
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errNoVmRSS
}

// procStat is what the benchmark takes from one /proc/PID/stat line.
type procStat struct {
	ppid int
	// self is utime+stime in clock ticks: every thread of the process,
	// those still running and those that have exited.
	self int64
	// reaped is cutime+cstime: the children the process has waited for
	// (their own reaped children included).
	reaped int64
}

// parseStat reads the parent and the CPU times from /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseStat(stat string) (procStat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, errBadStat
	}
	f := strings.Fields(stat[i+1:])
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16)
	// cstime(17): indexes 1, 11, 12, 13 and 14.
	if len(f) < 15 {
		return procStat{}, errBadStat
	}
	var v [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} {
		n, err := strconv.ParseInt(f[idx], 10, 64)
		if err != nil || n < 0 {
			return procStat{}, errBadStat
		}
		v[k] = n
	}
	return procStat{ppid: int(v[0]), self: v[1] + v[2], reaped: v[3] + v[4]}, nil
}

// parseCPUTicks returns utime+stime (clock ticks) from /proc/PID/stat.
func parseCPUTicks(stat string) (int64, error) {
	ps, err := parseStat(stat)
	return ps.self, err
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procRoot is where /proc is; tests point it at a fixture.
var procRoot = "/proc"

// processTree returns pid and every live descendant of it, pid first, from
// the ppid fields of procRoot/*/stat. Processes that vanish while it reads
// are skipped.
func processTree(pid int) ([]int, error) {
	if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid))); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue
		}
		ps, err := parseStat(string(b))
		if err != nil {
			continue
		}
		children[ps.ppid] = append(children[ps.ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree) && len(tree) <= len(ents); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// readRSS is the VmRSS (KiB) of pid and its live descendants together.
// compare.sh reads it before and after opening idle tunnels; helpers whose
// memory does not change cancel out of the difference.
func readRSS(pid int) (int64, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var sum int64
	for i, p := range tree {
		f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(p), "status"))
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a descendant that exited
		}
		kb, err := parseVmRSS(f)
		f.Close()
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a zombie has no VmRSS
		}
		sum += kb
	}
	return sum, nil
}

// readCPU is the user+system CPU time the proxy has used so far: pid's
// own threads, the children it has reaped, and every live descendant (with
// the children those have reaped). A multi-process proxy (Squid's helpers)
// is counted whole, and a descendant that exits between two readings moves
// from "live" to its parent's "reaped" without being lost.
func readCPU(pid int) (time.Duration, error) {
	tree, err := processTree(pid)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for i, p := range tree {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p), "stat"))
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue
		}
		ps, err := parseStat(string(b))
		if err != nil {
			return 0, err
		}
		ticks += ps.self + ps.reaped
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseMachineCPU returns the busy and total clock ticks of all CPUs from
// the first line of /proc/stat ("cpu user nice system idle iowait irq
// softirq steal guest guest_nice"; guest time is already in user). Steal
// counts as busy: time a hypervisor gave to someone else.
func parseMachineCPU(stat string) (busy, total int64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errBadStat
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil || v[i] < 0 {
			return 0, 0, errBadStat
		}
	}
	idle := v[3] + v[4]
	for _, x := range v {
		total += x
	}
	return total - idle, total, nil
}

func readMachineCPU() (busy, total int64, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseMachineCPU(string(b))
}

// cpuMeter measures, over one run, the proxy's CPU (with -pid) and how
// much of the machine other work took: all CPUs' busy time minus this
// process's and the proxy's. The load generator and the proxy share the
// machine with whatever else runs; a run during which others took a large
// share is not comparable with a quiet one.
type cpuMeter struct {
	pid                int
	proxy0, self0      time.Duration
	busy0, total0      int64
	machineOK, proxyOK bool
}

func startCPUMeter(pid int) (*cpuMeter, error) {
	m := &cpuMeter{pid: pid}
	if pid > 0 {
		var err error
		if m.proxy0, err = readCPU(pid); err != nil {
			return nil, err
		}
		m.proxyOK = true
	}
	var err error
	if m.self0, err = readCPU(os.Getpid()); err == nil {
		m.busy0, m.total0, err = readMachineCPU()
	}
	m.machineOK = err == nil
	return m, nil
}

// stop returns the proxy's CPU time during the run (0 without -pid) and
// the percentage of all CPUs' time that other work used (-1 if unknown).
func (m *cpuMeter) stop() (proxy time.Duration, otherPct float64, err error) {
	if m.proxyOK {
		p1, err := readCPU(m.pid)
		if err != nil {
			return 0, -1, err
		}
		proxy = p1 - m.proxy0
	}
	otherPct = -1
	if m.machineOK {
		self1, err1 := readCPU(os.Getpid())
		busy1, total1, err2 := readMachineCPU()
		if err1 == nil && err2 == nil && total1 > m.total0 {
			tick := time.Second / clockTicks
			other := time.Duration(busy1-m.busy0)*tick - (self1 - m.self0) - proxy
			otherPct = max(0, 100*float64(other)/float64(time.Duration(total1-m.total0)*tick))
		}
	}
	return proxy, otherPct, nil
}
