package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
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

// parseCPUTicks returns utime+stime (clock ticks) from /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after the last ')'.
func parseCPUTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errBadStat
	}
	f := strings.Fields(stat[i+1:])
	// After ')': state(3) ppid(4) ... utime(14) stime(15): indexes 11 and 12.
	if len(f) < 13 {
		return 0, errBadStat
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errBadStat
	}
	return u + s, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmRSS(f)
}

func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	t, err := parseCPUTicks(string(b))
	if err != nil {
		return 0, err
	}
	return time.Duration(t) * time.Second / clockTicks, nil
}
