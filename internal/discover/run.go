package discover

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/replay"
	"github.com/egress-proxy/egress/internal/rules"
)

// ErrRead: an input could not be read (I/O or gzip error). The report
// returned with it covers what was read.
var ErrRead = errors.New("discover: reading events")

// Limits of the readers.
const (
	MaxLine      = 1 << 20 // longer lines are malformed
	maxMalformed = 10      // malformed lines kept with their errors
	batchEvents  = 256
	batchQueue   = 2 // batches buffered per input
)

// Input is one event stream: JSON lines, gzip detected by its magic bytes.
// Either R is an open stream (read from the start of the merge), or Open
// opens it: such an input is opened once to find its first @timestamp, and
// again only when the merge reaches that time, so that rotated files that
// follow one another in time are not all open (with their buffers and
// goroutines) at once. The reader goroutine closes what Open returned.
type Input struct {
	Name string
	R    io.Reader
	Open func() (io.ReadCloser, error)
}

// probeLines is how many lines of an Open input are read for its first
// @timestamp; an input without one in them is opened at the start.
const probeLines = 1000

// Run analyses the events of every input under cfg. Each input is read and
// parsed by its own goroutine (with replay's decoder, so the same files
// work); Run merges them by @timestamp, so several files (one per proxy
// instance, or rotated ones) need not be concatenated or sorted first; an
// Open input is opened only when the merge reaches its first event. Each
// input is assumed to be roughly in time order, as egress writes it.
// Malformed lines are counted, not fatal; the error (wrapping ErrRead) is for
// an input that cannot be read, and comes with the report of the rest.
func Run(cfg *rules.Config, inputs []Input, opt Options) (*Report, error) {
	a, err := New(cfg, opt)
	if err != nil {
		return nil, err
	}
	return a.run(inputs)
}

// run reads, merges and adds every input, and reports.
func (a *Analyzer) run(inputs []Input) (*Report, error) {
	done := make(chan struct{})
	readers := make([]*reader, len(inputs))
	var wg sync.WaitGroup
	h := &streams{}
	start := func(i int) {
		in := inputs[i]
		rd := &reader{input: in.Name, out: make(chan []*audit.Event, batchQueue)}
		readers[i] = rd
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd.run(in, done)
		}()
		st := &stream{ch: rd.out}
		if st.advance() {
			heap.Push(h, st)
		}
	}
	// Inputs not yet open, by their first @timestamp.
	type later struct {
		i     int
		first time.Time
	}
	var pending []later
	for i, in := range inputs {
		if in.R != nil {
			start(i)
			continue
		}
		pending = append(pending, later{i: i, first: firstTime(in)})
	}
	slices.SortStableFunc(pending, func(x, y later) int { return x.first.Compare(y.first) })
	for {
		for len(pending) > 0 && (h.Len() == 0 || !pending[0].first.After((*h)[0].head().Time)) {
			start(pending[0].i)
			pending = pending[1:]
		}
		if h.Len() == 0 {
			break
		}
		st := (*h)[0]
		a.Add(st.batch[st.pos])
		if st.advance() {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	close(done)
	wg.Wait()

	rep := a.Report()
	var errs []error
	for _, rd := range readers {
		rep.Inputs = append(rep.Inputs, rd.input)
		rep.Lines += rd.lines
		rep.Malformed += rd.bad
		for _, m := range rd.badLines {
			if len(rep.MalformedLines) < maxMalformed {
				rep.MalformedLines = append(rep.MalformedLines, m)
			}
		}
		if rd.err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrRead, rd.input, rd.err))
		}
	}
	return rep, errors.Join(errs...)
}

// firstTime is the first @timestamp among the first probeLines lines of an
// Open input; zero when there is none or it cannot be read (the reader then
// reports the error).
func firstTime(in Input) time.Time {
	f, err := in.Open()
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	br, _, err := lines(f)
	if err != nil {
		return time.Time{}
	}
	for range probeLines {
		line, err := br.ReadSlice('\n')
		if ev, perr := replay.ParseEvent(bytes.TrimSpace(line)); perr == nil && !ev.Time.IsZero() {
			return ev.Time
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	return time.Time{}
}

// lines returns a buffered reader of r, decompressed when r starts with the
// gzip magic bytes.
func lines(r io.Reader) (*bufio.Reader, *gzip.Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return bufio.NewReaderSize(zr, 256<<10), zr, nil
	}
	return br, nil, nil
}

// stream is the merge's view of one reader: the batch being consumed.
type stream struct {
	ch    <-chan []*audit.Event
	batch []*audit.Event
	pos   int
}

func (s *stream) head() *audit.Event { return s.batch[s.pos] }

// advance moves to the next event, receiving the next batch when needed; false
// at the end of the input.
func (s *stream) advance() bool {
	if s.batch != nil {
		s.pos++
		if s.pos < len(s.batch) {
			return true
		}
	}
	b, ok := <-s.ch
	s.batch, s.pos = b, 0
	return ok
}

// streams is a min-heap of streams by the time of their current event.
type streams []*stream

func (h streams) Len() int { return len(h) }
func (h streams) Less(i, j int) bool {
	return h[i].head().Time.Before(h[j].head().Time)
}
func (h streams) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *streams) Push(x any)   { *h = append(*h, x.(*stream)) }
func (h *streams) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// reader owns one input: its goroutine reads and parses lines and sends
// batches of events on out, which it closes at the end. Its counts are read
// by Run after the goroutine has ended.
type reader struct {
	input    string
	out      chan []*audit.Event
	lines    int
	bad      int
	badLines []Malformed
	err      error
}

func (rd *reader) malformed(line int, err error) {
	rd.bad++
	if len(rd.badLines) < maxMalformed {
		rd.badLines = append(rd.badLines, Malformed{Input: rd.input, Line: line, Error: err.Error()})
	}
}

func (rd *reader) run(in Input, done <-chan struct{}) {
	defer close(rd.out)
	r := in.R
	if r == nil {
		f, err := in.Open()
		if err != nil {
			rd.err = err
			return
		}
		defer f.Close()
		r = f
	}
	br, zr, err := lines(r)
	if err != nil {
		rd.err = err
		return
	}
	batch := make([]*audit.Event, 0, batchEvents)
	send := func() bool {
		if len(batch) == 0 {
			return true
		}
		select {
		case rd.out <- batch:
			batch = make([]*audit.Event, 0, batchEvents)
			return true
		case <-done:
			return false
		}
	}
	line, long, inLong := 0, []byte(nil), false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !inLong {
				inLong, long = true, long[:0]
			}
			if len(long) <= MaxLine+2 {
				long = append(long, chunk...)
			}
			continue
		}
		data := chunk
		if inLong {
			if len(long) <= MaxLine+2 {
				long = append(long, chunk...)
			}
			data, inLong = long, false
		}
		if len(data) > 0 {
			line++
			data = bytes.TrimSpace(data)
			switch {
			case len(data) == 0:
			case len(data) > MaxLine:
				rd.lines++
				rd.malformed(line, fmt.Errorf("line too long (over %d bytes)", MaxLine))
			default:
				rd.lines++
				if ev, perr := replay.ParseEvent(data); perr != nil {
					rd.malformed(line, perr)
				} else {
					batch = append(batch, ev)
				}
			}
		}
		if len(batch) == batchEvents && !send() {
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rd.err = err
			} else if zr != nil {
				rd.err = zr.Close()
			}
			send()
			return
		}
	}
}
