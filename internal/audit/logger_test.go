package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer safe for the sink goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond every 10ms until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testEvent(id string) *Event {
	e := fixtures()[0].e
	e.ID = id
	return &e
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestParseOutput(t *testing.T) {
	good := map[string]output{
		"stdout":                         {kind: outStdout},
		"file:/var/log/egress.log":       {kind: outFile, path: "/var/log/egress.log"},
		"file:rel/egress.log":            {kind: outFile, path: "rel/egress.log"},
		"syslog+udp://127.0.0.1:514":     {kind: outSyslogUDP, addr: "127.0.0.1:514", host: "127.0.0.1"},
		"syslog+tcp://siem.example:6514": {kind: outSyslogTCP, addr: "siem.example:6514", host: "siem.example"},
		"syslog+tls://[::1]:6514/":       {kind: outSyslogTLS, addr: "[::1]:6514", host: "::1"},
	}
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			got, err := parseOutput(in)
			if err != nil || got != want {
				t.Fatalf("parseOutput(%q) = %+v, %v; want %+v", in, got, err, want)
			}
		})
	}
	bad := map[string]string{
		"":                            "want",
		"stderr":                      "want",
		"file:":                       "empty file path",
		"syslog://h:514":              "unknown scheme",
		"http://h:514":                "unknown scheme",
		"syslog+tcp://h":              "HOST:PORT",
		"syslog+tcp://:514":           "HOST:PORT",
		"syslog+tcp://h:0":            "1-65535",
		"syslog+tcp://h:70000":        "1-65535",
		"syslog+tcp://h:x":            "invalid port",
		"syslog+tls://user:pw@h:6514": "only HOST:PORT",
		"syslog+udp://h:514/path":     "only HOST:PORT",
		"syslog+udp://h:514?q=1":      "only HOST:PORT",
		"syslog+tcp://[::1:514":       "want",
	}
	for in, msg := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			err := ParseOutput(in)
			if !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), msg) {
				t.Fatalf("ParseOutput(%q) = %v; want ErrOutput mentioning %q", in, err, msg)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ids := make([]string, 0, 5000)
			for range 5000 {
				ids = append(ids, NewID())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if !re.MatchString(id) {
					t.Errorf("NewID() = %q, not a UUIDv7", id)
				}
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	if b := NewID(); b[:13] <= a[:13] {
		t.Errorf("ids not time-ordered: %s then %s", a, b)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Options{Format: "xml", Output: "stdout"}); !errors.Is(err, ErrFormat) {
		t.Errorf("format: %v", err)
	}
	if _, err := New(Options{Format: "ecs", Output: "syslog+tcp://h"}); !errors.Is(err, ErrOutput) {
		t.Errorf("output: %v", err)
	}
	if _, err := New(Options{Format: "ecs", Output: "file:" + filepath.Join(t.TempDir(), "no", "such", "dir", "f.log")}); !errors.Is(err, ErrOutput) {
		t.Errorf("file: %v", err)
	}
	if _, err := New(Options{Format: "ecs", Output: "syslog+tls://127.0.0.1:1", TLSCAFile: filepath.Join(t.TempDir(), "none.pem")}); !errors.Is(err, ErrTLSConfig) {
		t.Errorf("tls: %v", err)
	}
}

func TestStdoutDeliversAndCloseFlushes(t *testing.T) {
	for _, format := range []string{"ecs", "cef"} {
		t.Run(format, func(t *testing.T) {
			var out lockedBuffer
			l, err := New(Options{Format: format, Output: "stdout", Stdout: &out, Version: testVersion})
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000
			for range n {
				l.Log(testEvent(""))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := lines(out.String())
			if len(got) != n || l.Dropped() != 0 {
				t.Fatalf("%d lines, %d dropped; want %d, 0", len(got), l.Dropped(), n)
			}
			ids := map[string]bool{}
			for _, line := range got {
				if format == "ecs" {
					e, err := ParseECS([]byte(line))
					if err != nil {
						t.Fatal(err)
					}
					ids[e.ID] = true
				} else if _, _, err := parseCEF(line); err != nil {
					t.Fatal(err)
				}
			}
			if format == "ecs" && len(ids) != n {
				t.Fatalf("%d distinct ids assigned to %d events", len(ids), n)
			}
			l.Log(testEvent("after-close"))
			if l.Dropped() != 1 {
				t.Fatalf("Log after Close: dropped %d, want 1", l.Dropped())
			}
		})
	}
}

// gateWriter blocks every Write until open is closed.
type gateWriter struct {
	open chan struct{}
	lockedBuffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.open
	return g.lockedBuffer.Write(p)
}

func TestLogNeverBlocksOnStuckSink(t *testing.T) {
	w := &gateWriter{open: make(chan struct{})}
	var onDrop atomic.Uint64
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: w, QueueSize: 8, OnDrop: func() { onDrop.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	start := time.Now()
	for range n {
		l.Log(testEvent(""))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d Log calls against a stuck sink took %v", n, d)
	}
	// At most one batch in the blocked write plus a full queue can survive.
	if d := l.Dropped(); d < n-maxBatch-8 {
		t.Fatalf("dropped %d, want at least %d", d, n-maxBatch-8)
	}
	close(w.open)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := uint64(len(lines(w.String())))
	if got+l.Dropped() != n || onDrop.Load() != l.Dropped() {
		t.Fatalf("written %d + dropped %d != %d, or OnDrop %d != Dropped", got, l.Dropped(), n, onDrop.Load())
	}
}

func TestQueueByteBound(t *testing.T) {
	w := &gateWriter{open: make(chan struct{})}
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: w, QueueBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent("x")
	e.URLPath = strings.Repeat("p", MaxFieldLen) // ~3 KiB records
	for range 100 {
		l.Log(e)
	}
	if d := l.Dropped(); d < 100-3 {
		t.Fatalf("dropped %d of 100 records over a 4 KiB budget", d)
	}
	close(w.open)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseGivesUpOnBlockedWrite(t *testing.T) {
	w := &gateWriter{open: make(chan struct{})}
	defer close(w.open)
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: w, FlushTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(testEvent("x"))
	start := time.Now()
	if err := l.Close(); !errors.Is(err, ErrFlushTimeout) {
		t.Fatalf("Close = %v, want ErrFlushTimeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestFileReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "egress.log")
	l, err := New(Options{Format: "ecs", Output: "file:" + path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	read := func(p string) []string {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return lines(string(b))
	}
	l.Log(testEvent("before-rotate"))
	waitFor(t, 10*time.Second, "first event in the file", func() bool { return len(read(path)) == 1 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Log(testEvent("still-old-file")) // logrotate renamed, SIGHUP not yet sent
	waitFor(t, 10*time.Second, "second event in the renamed file", func() bool { return len(read(path+".1")) == 2 })
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Log(testEvent("after-rotate"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := read(path+".1"), read(path)
	if len(old) != 2 || !strings.Contains(old[0], "before-rotate") || !strings.Contains(old[1], "still-old-file") {
		t.Fatalf("rotated file: %q", old)
	}
	if len(cur) != 1 || !strings.Contains(cur[0], "after-rotate") {
		t.Fatalf("new file: %q", cur)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != filePerm {
		t.Fatalf("new file mode %v, %v; want %v", fi.Mode().Perm(), err, os.FileMode(filePerm))
	}
	if err := l.Reopen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reopen after Close = %v, want ErrClosed", err)
	}
}

func TestFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "egress.log")
	if err := os.WriteFile(path, []byte("existing line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Format: "cef", Output: "file:" + path})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(testEvent("x"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	if len(got) != 2 || got[0] != "existing line" || !strings.HasPrefix(got[1], "CEF:0|") {
		t.Fatalf("file: %q", got)
	}
}

func TestReopenNoopForStdout(t *testing.T) {
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: io.Discard, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLogECS(b *testing.B) {
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: io.Discard, Version: testVersion})
	if err != nil {
		b.Fatal(err)
	}
	e := testEvent(NewID())
	b.ReportAllocs()
	for b.Loop() {
		l.Log(e)
	}
	b.StopTimer()
	_ = l.Close()
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
}

func BenchmarkEncode(b *testing.B) {
	for _, format := range []string{"ecs", "cef"} {
		b.Run(format, func(b *testing.B) {
			enc, _ := NewEncoder(format, testVersion)
			e := testEvent(NewID())
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.Encode(buf[:0], e)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID()
	}
}

// TestLingerLosesNothing: events logged while the writer lingers after a
// write are all written (bursts past half of a small queue, which end the
// linger early), and Close writes those queued during a linger.
func TestLingerLosesNothing(t *testing.T) {
	var w lockedBuffer
	l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: &w, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	waitLines := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(lines(w.String())) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d lines written, want %d", len(lines(w.String())), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.Log(testEvent(""))
	waitLines(1) // the writer lingers now
	for range 3 {
		for range 7 {
			l.Log(testEvent(""))
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitLines(22)
	l.Log(testEvent(""))
	l.Log(testEvent(""))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(lines(w.String())); got != 24 || l.Dropped() != 0 {
		t.Fatalf("%d lines, %d dropped; want 24, 0", got, l.Dropped())
	}
}

// fullDisk takes room more bytes, then fails every write with ENOSPC
// after writing what fits (as os.File.Write does on a full disk), until
// freed.
type fullDisk struct {
	lockedBuffer
	mu    sync.Mutex
	room  int
	freed bool
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.freed || len(p) <= d.room {
		d.room -= len(p)
		return d.lockedBuffer.Write(p)
	}
	n := d.room
	d.room = 0
	d.lockedBuffer.Write(p[:n])
	return n, syscall.ENOSPC
}

func (d *fullDisk) free() {
	d.mu.Lock()
	d.freed = true
	d.mu.Unlock()
}

// TestDiskFullTornRecord: a disk that fills in the middle of a batch keeps
// the records written whole (not counted as dropped) and part of the next;
// once there is room again the fragment ends on a line of its own, so
// every later event is a whole line a SIEM can parse, and written +
// dropped + the fragment add up.
func TestDiskFullTornRecord(t *testing.T) {
	enc, err := NewEncoder("ecs", "test")
	if err != nil {
		t.Fatal(err)
	}
	one := len(bytes.TrimSuffix(enc.Encode(nil, testEvent("before-00")), []byte("\n"))) + 1 // a record's line, about
	for _, room := range []int{0, one / 2, 3*one + one/3, 5 * one} {
		t.Run(strconv.Itoa(room), func(t *testing.T) {
			d := &fullDisk{room: room}
			l, err := New(Options{Format: "ecs", Output: "stdout", Stdout: d})
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			for i := range n {
				l.Log(testEvent(fmt.Sprintf("before-%02d", i)))
			}
			deadline := time.Now().Add(5 * time.Second)
			for l.Dropped() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			d.free()
			for i := range n {
				l.Log(testEvent(fmt.Sprintf("after-%02d", i)))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var whole, fragments, after int
			for _, line := range lines(d.String()) {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) != nil {
					fragments++
					continue
				}
				whole++
				if strings.Contains(line, `"after-`) {
					after++
				}
			}
			if after != n {
				t.Fatalf("%d of the %d events after the disk was freed are whole lines:\n%s", after, n, d.String())
			}
			if fragments > 1 {
				t.Fatalf("%d fragments, want at most 1:\n%s", fragments, d.String())
			}
			if got := uint64(whole) + l.Dropped(); got != 2*n {
				t.Fatalf("whole %d + dropped %d = %d, want %d (fragments %d)", whole, l.Dropped(), got, 2*n, fragments)
			}
		})
	}
}
