package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/replay"
)

// Bounds of the event aggregation: memory depends on these, never on the
// number of events.
const (
	// MaxKeys is how many distinct (rule, ruleset, action) rows are kept;
	// events of further rows are counted in one "(other)" row.
	MaxKeys = 4096
	// MaxSources is how many distinct source addresses are remembered over
	// all rows together; past it, unique-source counts are lower bounds
	// (SourcesCapped).
	MaxSources = 1 << 20
	// MaxDays is the longest daily series (the last MaxDays days of the
	// events are charted).
	MaxDays = 366
	// MaxLine is the longest event line, in bytes; longer lines are malformed.
	MaxLine = 1 << 20
	// MaxName is the longest rule, ruleset, action or reason kept from an
	// event, in bytes (longer ones are cut), so that rows stay small.
	MaxName = 256
)

// clip cuts s to MaxName bytes.
func clip(s string) string {
	if len(s) > MaxName {
		s = s[:MaxName]
	}
	return s
}

// Events is what recorded events show about the configuration.
type Events struct {
	Inputs []string  `json:"inputs"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	Lines  int       `json:"lines"`
	Events int       `json:"events"` // in the window
	// OutOfWindow counts events outside [Since, Until).
	OutOfWindow int `json:"out_of_window"`
	Malformed   int `json:"malformed"`
	// First and Last are the earliest and latest @timestamp in the window.
	First time.Time `json:"first_event,omitzero"`
	Last  time.Time `json:"last_event,omitzero"`
	// Days are the dates (YYYY-MM-DD) of every Daily series.
	Days []string `json:"days"`
	// Rules has a row per deciding rule (or reason, for events decided by a
	// segment default or a protocol check), most hits first.
	Rules []Hits `json:"rules"`
	// Exceptions has a row per exception of the configuration, in the
	// report's order, with zero hits when no event used it.
	Exceptions []Hits `json:"exceptions"`
	// Monitor has a row per monitor rule that matched, with the action it
	// would have taken and how many allowed events it would have blocked.
	Monitor []Hits `json:"monitor"`
	// SourcesCapped: MaxSources was reached; Sources are lower bounds.
	SourcesCapped bool `json:"sources_capped,omitempty"`
	// KeysCapped: MaxKeys was reached; some rows are folded into "(other)".
	KeysCapped bool `json:"keys_capped,omitempty"`
}

// Hits counts the events of one row.
type Hits struct {
	Rule    string `json:"rule,omitempty"`
	Ruleset string `json:"ruleset,omitempty"`
	Action  string `json:"action"`
	Reason  string `json:"reason,omitempty"` // for rows without a rule
	Hits    int    `json:"hits"`
	Sources int    `json:"unique_sources"`
	// WouldBlock: monitor rows only, allowed events this deny rule matched.
	WouldBlock int   `json:"would_block,omitempty"`
	Daily      []int `json:"daily"`
}

// Label is "rule (ruleset)", or the reason for a row without a rule.
func (h Hits) Label() string {
	if h.Rule == "" {
		if h.Reason == "" {
			return "(no rule)"
		}
		return h.Reason
	}
	return h.Rule + " (" + h.Ruleset + ")"
}

type key struct {
	monitor               bool
	rule, ruleset, action string
	reason                string
}

type agg struct {
	hits, wouldBlock int
	sources          map[netip.Addr]struct{} // zone-less addresses
	days             map[int]int             // Unix day -> events
}

// Aggregator accumulates events; Add them, then Finish. Not safe for
// concurrent use.
type Aggregator struct {
	since, until time.Time
	ev           Events
	rows         map[key]*agg
	sources      int // entries in all rows' source sets
	maxDay       int // of the latest event
}

// NewAggregator counts events in [since, until) (a zero bound is open).
func NewAggregator(since, until time.Time) *Aggregator {
	return &Aggregator{since: since, until: until, rows: map[key]*agg{}, maxDay: math.MinInt,
		ev: Events{Since: since, Until: until, Inputs: []string{}}}
}

func (a *Aggregator) row(k key) *agg {
	g := a.rows[k]
	if g == nil {
		if len(a.rows) >= MaxKeys {
			a.ev.KeysCapped = true
			k = key{monitor: k.monitor, rule: "(other)", action: k.action}
			if g = a.rows[k]; g != nil {
				return g
			}
		}
		g = &agg{sources: map[netip.Addr]struct{}{}, days: map[int]int{}}
		// A clipped name must not keep its event's long string alive.
		k.rule, k.ruleset, k.action, k.reason = strings.Clone(k.rule), strings.Clone(k.ruleset), strings.Clone(k.action), strings.Clone(k.reason)
		a.rows[k] = g
	}
	return g
}

func (a *Aggregator) count(g *agg, src netip.Addr, day int, dated bool) {
	g.hits++
	if src.IsValid() {
		if _, ok := g.sources[src]; !ok {
			if a.sources < MaxSources {
				g.sources[src] = struct{}{}
				a.sources++
			} else {
				a.ev.SourcesCapped = true
			}
		}
	}
	if dated {
		g.days[day]++
		// Only the last MaxDays days up to the latest event are charted and
		// the latest only grows: older days can go once the map is large.
		if len(g.days) > 2*MaxDays {
			for d := range g.days {
				if d <= a.maxDay-MaxDays {
					delete(g.days, d)
				}
			}
		}
	}
}

// Add counts one event.
func (a *Aggregator) Add(ev *audit.Event) {
	if !ev.Time.IsZero() && (!a.since.IsZero() && ev.Time.Before(a.since) || !a.until.IsZero() && !ev.Time.Before(a.until)) {
		a.ev.OutOfWindow++
		return
	}
	a.ev.Events++
	day, dated := 0, !ev.Time.IsZero()
	if dated {
		t := ev.Time.UTC()
		if a.ev.First.IsZero() || t.Before(a.ev.First) {
			a.ev.First = t
		}
		if t.After(a.ev.Last) {
			a.ev.Last = t
		}
		day = unixDay(t)
		a.maxDay = max(a.maxDay, day)
	}
	// An unparsable source.ip counts as no source (hits, not sources).
	src, _ := netip.ParseAddr(ev.SourceIP)
	src = src.WithZone("").Unmap()
	k := key{rule: clip(ev.Rule), ruleset: clip(ev.Ruleset), action: clip(ev.Action)}
	if ev.Rule == "" {
		k.ruleset, k.reason = "", clip(ev.Reason)
	}
	a.count(a.row(k), src, day, dated)
	for _, m := range ev.Monitor {
		g := a.row(key{monitor: true, rule: clip(m.Rule), ruleset: clip(m.Ruleset), action: clip(m.Action)})
		a.count(g, src, day, dated)
		if m.Action == audit.ActionDeny && ev.Action == audit.ActionAllow {
			g.wouldBlock++
		}
	}
}

// Read streams the ECS lines of r (gzip detected by its magic bytes) into a.
// Malformed lines are counted, not fatal; the error is for a stream that
// cannot be read (the lines before it are counted).
//
// Parsing is the cost, so it runs on every CPU: a reader goroutine cuts the
// stream into batches of lines, parse workers turn each batch into events,
// and Read (the only goroutine that touches a) adds the batches in stream
// order, so the report does not depend on scheduling. At most queueDepth
// batches are in flight.
func (a *Aggregator) Read(name string, r io.Reader) error {
	a.ev.Inputs = append(a.ev.Inputs, name)
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	workers := runtime.GOMAXPROCS(0)
	queueDepth := 2 * workers
	work := make(chan *batch, queueDepth)
	order := make(chan *batch, queueDepth)
	free := make(chan *batch, 2*queueDepth+workers) // added batches, for reuse
	var readErr error
	go func() { // owns br; closes both channels when the stream ends
		readErr = cutBatches(br, work, order, free)
		close(work)
		close(order)
	}()
	for range workers {
		go func() {
			for b := range work {
				b.parse()
			}
		}()
	}
	for b := range order {
		<-b.done
		a.ev.Lines += len(b.ends)
		a.ev.Malformed += b.bad
		for _, ev := range b.evs {
			a.Add(ev)
		}
		clear(b.evs) // the events can go
		select {
		case free <- b:
		default:
		}
	}
	if readErr != nil { // written before close(order)
		return fmt.Errorf("%s: %w", name, readErr)
	}
	return nil
}

// batchLines is the number of lines per batch.
const batchLines = 512

// batch is a run of lines: line i is buf[ends[i-1]:ends[i]]; long[i] says
// line i was longer than MaxLine (not kept, malformed). The reader fills it,
// one worker parses it into evs and closes done, then Read adds it.
type batch struct {
	buf  []byte
	ends []int
	long map[int]bool
	evs  []*audit.Event
	bad  int
	done chan struct{}
}

func (b *batch) parse() {
	start := 0
	for i, end := range b.ends {
		line := b.buf[start:end]
		start = end
		if b.long[i] {
			b.bad++
			continue
		}
		if ev, err := replay.ParseEvent(line); err != nil {
			b.bad++
		} else {
			b.evs = append(b.evs, ev)
		}
	}
	close(b.done)
}

// cutBatches reads non-blank lines (trimmed) into batches and sends each to
// work (to be parsed) and order (to be added in sequence).
func cutBatches(br *bufio.Reader, work, order chan<- *batch, free <-chan *batch) error {
	newBatch := func() *batch {
		select {
		case b := <-free:
			b.buf, b.ends, b.evs, b.bad, b.long = b.buf[:0], b.ends[:0], b.evs[:0], 0, nil
			b.done = make(chan struct{})
			return b
		default:
			return &batch{buf: make([]byte, 0, 256<<10), ends: make([]int, 0, batchLines), done: make(chan struct{})}
		}
	}
	b := newBatch()
	send := func() {
		order <- b
		work <- b
		b = newBatch()
	}
	var long []byte
	inLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !inLong {
				inLong, long = true, long[:0]
			}
			if len(long) <= MaxLine {
				long = append(long, chunk...)
			}
			continue
		}
		line := chunk
		if inLong {
			if len(long) <= MaxLine {
				long = append(long, chunk...)
			}
			line, inLong = long, false
		}
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			if len(line) > MaxLine {
				if b.long == nil {
					b.long = map[int]bool{}
				}
				b.long[len(b.ends)] = true
			} else {
				b.buf = append(b.buf, line...)
			}
			b.ends = append(b.ends, len(b.buf))
		}
		if len(b.ends) >= batchLines || (err != nil && len(b.ends) > 0) {
			send()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// Finish builds the Events section of rep (its exceptions get their rows).
func (a *Aggregator) Finish(rep *Report) {
	ev := a.ev
	ev.Rules, ev.Monitor, ev.Exceptions = []Hits{}, []Hits{}, []Hits{}
	ev.Days = []string{}
	first, last := 0, -1
	if !ev.First.IsZero() {
		first, last = unixDay(ev.First), unixDay(ev.Last)
		if last-first+1 > MaxDays {
			first = last - MaxDays + 1
		}
		for d := first; d <= last; d++ {
			ev.Days = append(ev.Days, time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly))
		}
	}
	hits := func(k key, g *agg) Hits {
		h := Hits{Rule: k.rule, Ruleset: k.ruleset, Action: k.action, Reason: k.reason,
			Hits: g.hits, Sources: len(g.sources), WouldBlock: g.wouldBlock, Daily: make([]int, len(ev.Days))}
		for d, n := range g.days {
			if d >= first && d <= last {
				h.Daily[d-first] += n
			}
		}
		return h
	}
	for k, g := range a.rows {
		if k.monitor {
			ev.Monitor = append(ev.Monitor, hits(k, g))
		} else {
			ev.Rules = append(ev.Rules, hits(k, g))
		}
	}
	order := func(a, b Hits) int {
		if a.Hits != b.Hits {
			return b.Hits - a.Hits
		}
		if a.Label() != b.Label() {
			if a.Label() < b.Label() {
				return -1
			}
			return 1
		}
		if a.Action < b.Action {
			return -1
		}
		if a.Action > b.Action {
			return 1
		}
		return 0
	}
	slices.SortFunc(ev.Rules, order)
	slices.SortFunc(ev.Monitor, order)
	for _, e := range rep.Exceptions {
		h := Hits{Rule: e.Rule, Ruleset: e.Ruleset, Action: e.Action, Daily: make([]int, len(ev.Days))}
		for k, g := range a.rows {
			if k.monitor || k.rule != e.Rule || k.ruleset != e.Ruleset {
				continue
			}
			x := hits(k, g)
			h.Hits += x.Hits
			h.Sources += x.Sources // one row per action; an exception decides one action
			for i, n := range x.Daily {
				h.Daily[i] += n
			}
		}
		ev.Exceptions = append(ev.Exceptions, h)
	}
	rep.Events = &ev
}

// unixDay is the number of days since 1970-01-01 of t's UTC date.
func unixDay(t time.Time) int {
	s := t.Unix()
	d := s / 86400
	if s < 0 && s%86400 != 0 {
		d--
	}
	return int(d)
}
