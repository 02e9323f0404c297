package dnscache

import (
	"bufio"
	"bytes"
	"iter"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sysConf is what /etc/resolv.conf says (resolv.conf(5)); the fields Go's
// own resolver reads, with its defaults.
type sysConf struct {
	servers  []netip.AddrPort
	search   []string // lower case, no trailing dot
	ndots    int
	timeout  time.Duration // per attempt
	attempts int
}

func defaultConf() sysConf {
	return sysConf{ndots: 1, timeout: 5 * time.Second, attempts: 2}
}

// parseResolvConf reads resolv.conf text. Unknown lines are ignored, as
// the C library does; at most three nameservers count (MAXNS).
func parseResolvConf(data []byte) sysConf {
	c := defaultConf()
	for f := range fields(data, "#;") {
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && len(c.servers) < 3 {
				c.servers = append(c.servers, netip.AddrPortFrom(a, 53))
			}
		case "search", "domain":
			c.search = c.search[:0]
			for _, d := range f[1:] {
				if d = strings.TrimSuffix(strings.ToLower(d), "."); d != "" {
					c.search = append(c.search, d)
				}
			}
		case "options":
			for _, o := range f[1:] {
				k, v, _ := strings.Cut(o, ":")
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					continue
				}
				switch k {
				case "ndots":
					c.ndots = min(n, 15)
				case "timeout":
					c.timeout = time.Duration(min(max(n, 1), 30)) * time.Second
				case "attempts":
					c.attempts = min(max(n, 1), 5)
				}
			}
		}
	}
	return c
}

// fields yields the fields of each line of data with at least two, the
// text after any of the comment characters dropped. A line over 64 KiB
// ends the file.
func fields(data []byte, comment string) iter.Seq[[]string] {
	return func(yield func([]string) bool) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 1024), 64<<10)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.IndexAny(line, comment); i >= 0 {
				line = line[:i]
			}
			if f := strings.Fields(line); len(f) >= 2 && !yield(f) {
				return
			}
		}
	}
}

// parseHosts reads hosts(5) text into name → addresses (names in lower
// case, without a trailing dot).
func parseHosts(data []byte) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	for f := range fields(data, "#") {
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			continue
		}
		for _, n := range f[1:] {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if len(m[n]) < maxAddrs {
				m[n] = append(m[n], a.Unmap())
			}
		}
	}
	return m
}

// recheck is how often a system file is looked at again (Go's resolver
// uses the same interval).
const recheck = 5 * time.Second

// watched is a system file parsed into T, read again when its modification
// time or size changes, looked at no more than once per recheck. A file
// that cannot be read is the zero file (parse(nil)).
type watched[T any] struct {
	path  string
	parse func([]byte) T

	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	val     T
	loaded  bool
}

func (w *watched[T]) get(now time.Time) T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded && now.Sub(w.checked) < recheck {
		return w.val
	}
	w.checked = now
	fi, err := os.Stat(w.path)
	if err != nil {
		if !w.loaded || !w.mod.IsZero() {
			w.val, w.mod, w.size, w.loaded = w.parse(nil), time.Time{}, 0, true
		}
		return w.val
	}
	if w.loaded && fi.ModTime().Equal(w.mod) && fi.Size() == w.size {
		return w.val
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		data = nil
	}
	w.val, w.mod, w.size, w.loaded = w.parse(data), fi.ModTime(), fi.Size(), true
	return w.val
}
