// Package replay owns `egress replay`: it re-decides recorded ECS events (the
// JSON lines `egress run` writes) under a candidate configuration and reports
// every decision that would change, grouped by segment, rule and destination.
//
// Only policy decisions are comparable. An event whose recorded reason is a
// protocol or transport outcome that does not depend on the policy
// (malformed_client_hello, hello_timeout, non_tls, dns_error,
// destination_unavailable, private_destination, connection_limit,
// config_reload), or that lacks what a decision needs (no source.ip, no name
// at all, an unknown listener, a Host header mismatch on plain HTTP whose Host
// header is not recorded) is skipped and counted as not re-decidable, by
// reason.
//
// Input is streamed: a reader goroutine cuts lines into batches, workers
// (one per CPU) parse and decide them, and their tallies are merged at the
// end, so the report does not depend on scheduling. gzip input is detected
// by its magic bytes and decompressed transparently.
package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/rules"
)

// Sentinel errors.
var (
	// ErrRead: the event stream could not be read (I/O or gzip error). The
	// report returned with it covers the lines read before the error.
	ErrRead = errors.New("replay: reading events")
	// ErrLineTooLong: a line longer than Options.MaxLine (reported as a
	// malformed line, never returned).
	ErrLineTooLong = errors.New("replay: line too long")
)

// Change is the kind of a changed decision.
type Change string

// Kinds of change, in report order.
const (
	AllowToDeny Change = "allow_to_deny" // the event was allowed; the candidate denies it
	DenyToAllow Change = "deny_to_allow" // the event was denied; the candidate allows it
	RuleChanged Change = "rule_changed"  // same action, decided by another rule or reason
)

// Changes lists the kinds of change in report order.
var Changes = []Change{AllowToDeny, DenyToAllow, RuleChanged}

// Title is the section heading of a kind of change.
func (c Change) Title() string {
	switch c {
	case AllowToDeny:
		return "allow → deny"
	case DenyToAllow:
		return "deny → allow"
	case RuleChanged:
		return "same action, other rule"
	}
	return string(c)
}

// Pseudo-reasons of events that are skipped for want of data rather than
// because of their recorded reason.
const (
	SkipNoSource        = "no source.ip"
	SkipNoName          = "no destination name"
	SkipUnknownListener = "unknown egress.listener"
	SkipUnknownAction   = "unknown event.action"
	SkipHostHeader      = "sni_mismatch (Host header not recorded)"
)

// comparable lists the recorded reasons that a policy decision produces
// (rules.DecideAll), so that the candidate's decision can be compared with
// them. Every other reason is a protocol or transport outcome.
var comparable = map[string]bool{
	string(rules.ReasonRule):          true,
	string(rules.ReasonDefault):       true,
	string(rules.ReasonUnknownSource): true,
	string(rules.ReasonInvalidHost):   true,
	string(rules.ReasonSNIMismatch):   true,
	string(rules.ReasonMissingSNI):    true,
	string(rules.ReasonECH):           true,
}

// Defaults of Options.
const (
	DefaultMaxLine      = 1 << 20 // bytes
	DefaultMaxMalformed = 10      // malformed lines kept with their errors
	batchLines          = 512
)

// Options tune Run. The zero value is ready to use.
type Options struct {
	// Input names the events in the report ("-" or a path).
	Input string
	// MaxLine is the longest line read, in bytes; longer lines are
	// malformed. 0 means DefaultMaxLine.
	MaxLine int
	// MaxMalformed is how many malformed lines are kept with their errors
	// (the first ones). 0 means DefaultMaxMalformed.
	MaxMalformed int
	// Workers is the number of deciding goroutines; 0 means GOMAXPROCS.
	Workers int
}

// Decision is one side of a comparison: what decided an event.
type Decision struct {
	Action  string `json:"action"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule,omitempty"`
	Ruleset string `json:"ruleset,omitempty"`
	Segment string `json:"segment,omitempty"`
}

// Label is "rule (ruleset)" for a rule, else the reason.
func (d Decision) Label() string {
	if d.Rule == "" {
		return d.Reason
	}
	if d.Ruleset == "" {
		return d.Rule
	}
	return d.Rule + " (" + d.Ruleset + ")"
}

// Group counts the changed events of one kind with the same old and new
// decision and destination.
type Group struct {
	Change      Change   `json:"change"`
	Count       int      `json:"count"`
	Destination string   `json:"destination"`
	New         Decision `json:"new"`
	Old         Decision `json:"old"`
}

// Malformed is a line that is not an egress ECS event.
type Malformed struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// Count is a named count.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Report is the outcome of Run.
type Report struct {
	Input         string        `json:"input"`
	Config        string        `json:"config"`
	ConfigVersion string        `json:"config_version"`
	Elapsed       time.Duration `json:"-"`
	// Recorded are the config versions the events were decided under, most
	// frequent first (at most 10 kept).
	Recorded []Count `json:"recorded_config_versions"`
	// First and Last are the earliest and latest @timestamp seen.
	First time.Time `json:"first_event,omitzero"`
	Last  time.Time `json:"last_event,omitzero"`

	Lines          int         `json:"lines"`  // non-blank lines read
	Events         int         `json:"events"` // lines that parsed as events
	AllowToDeny    int         `json:"allow_to_deny"`
	DenyToAllow    int         `json:"deny_to_allow"`
	RuleChanged    int         `json:"rule_changed"`
	Unchanged      int         `json:"unchanged"`
	NotRedecidable int         `json:"not_redecidable"`
	Skipped        []Count     `json:"not_redecidable_reasons"` // by reason, most frequent first
	Malformed      int         `json:"malformed"`
	MalformedLines []Malformed `json:"malformed_lines"` // the first MaxMalformed, by line
	// Groups holds every changed group, by kind (Changes order), then count
	// descending, destination, segment, new and old decision.
	Groups []Group `json:"-"`
}

// Changed is the number of events whose action changes.
func (r *Report) Changed() int { return r.AllowToDeny + r.DenyToAllow }

// Section returns the groups of one kind of change, in report order.
func (r *Report) Section(c Change) []Group {
	var out []Group
	for _, g := range r.Groups {
		if g.Change == c {
			out = append(out, g)
		}
	}
	return out
}

// Run re-decides every event read from r under cfg. Malformed lines are
// counted, not fatal; the error (wrapping ErrRead) is for a stream that cannot
// be read, and comes with the report of what was read before it.
func Run(cfg *rules.Config, r io.Reader, opt Options) (*Report, error) {
	start := time.Now()
	if opt.MaxLine <= 0 {
		opt.MaxLine = DefaultMaxLine
	}
	if opt.MaxMalformed <= 0 {
		opt.MaxMalformed = DefaultMaxMalformed
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var zr *gzip.Reader
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		var err error
		if zr, err = gzip.NewReader(br); err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrRead, err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	}

	work := make(chan *batch, opt.Workers*2)
	free := make(chan *batch, opt.Workers*2+2)
	tallies := make([]*tally, opt.Workers)
	var wg sync.WaitGroup
	for i := range tallies {
		t := newTally(opt.MaxMalformed)
		tallies[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			decideBatches(cfg, t, work, free)
		}()
	}
	reader := newTally(opt.MaxMalformed)
	err := readBatches(br, opt.MaxLine, reader, work, free)
	close(work)
	wg.Wait()
	if err == nil && zr != nil {
		err = zr.Close()
	}

	rep := &Report{Input: opt.Input, Config: cfg.Source, ConfigVersion: cfg.Version}
	all := reader
	for _, t := range tallies {
		all.merge(t)
	}
	all.fill(rep)
	rep.Elapsed = time.Since(start)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrRead, err)
	}
	return rep, nil
}

// batch is a run of consecutive lines: line first+i is buf[ends[i-1]:ends[i]].
// long lists the indexes of over-long lines, already recorded as malformed.
type batch struct {
	first int
	buf   []byte
	ends  []int
	long  []int
}

// readBatches cuts the stream into batches of lines and sends them to work.
// Over-long lines are recorded in t as malformed and sent as placeholders, so
// that workers keep the numbering.
func readBatches(br *bufio.Reader, maxLine int, t *tally, work, free chan *batch) error {
	line := 0
	var b *batch
	next := func() {
		select {
		case b = <-free:
			b.buf, b.ends, b.long = b.buf[:0], b.ends[:0], b.long[:0]
		default:
			b = &batch{buf: make([]byte, 0, 256<<10), ends: make([]int, 0, batchLines)}
		}
		b.first = line + 1
	}
	next()
	var long []byte
	inLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !inLong {
				inLong, long = true, long[:0]
			}
			if len(long) <= maxLine+2 {
				long = append(long, chunk...)
			}
			continue
		}
		data := chunk
		if inLong {
			if len(long) <= maxLine+2 {
				long = append(long, chunk...)
			}
			data, inLong = long, false
		}
		if len(data) > 0 {
			line++
			data = bytes.TrimSuffix(data, []byte{'\n'})
			data = bytes.TrimSuffix(data, []byte{'\r'})
			if len(data) > maxLine {
				t.lines++
				t.malformed(line, fmt.Errorf("%w (over %d bytes)", ErrLineTooLong, maxLine))
				b.long = append(b.long, len(b.ends))
			} else {
				b.buf = append(b.buf, data...)
			}
			b.ends = append(b.ends, len(b.buf))
		}
		if len(b.ends) >= batchLines || (err != nil && len(b.ends) > 0) {
			work <- b
			next()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// decideBatches parses and decides every line of each batch into t.
func decideBatches(cfg *rules.Config, t *tally, work <-chan *batch, free chan<- *batch) {
	for b := range work {
		start, long := 0, b.long
		for i, end := range b.ends {
			if len(long) > 0 && long[0] == i {
				long = long[1:]
			} else {
				t.line(cfg, b.first+i, bytes.TrimSpace(b.buf[start:end]))
			}
			start = end
		}
		select {
		case free <- b:
		default:
		}
	}
}

type groupKey struct {
	change   Change
	dest     string
	old, new Decision
}

// tally is one worker's counts.
type tally struct {
	maxBad      int
	lines       int
	events      int
	unchanged   int
	changes     map[Change]int
	skipped     map[string]int
	groups      map[groupKey]int
	bad         int
	badLines    []Malformed // the first maxBad seen, in line order
	first, last time.Time
	versions    map[string]int
}

func newTally(maxBad int) *tally {
	return &tally{maxBad: maxBad, changes: map[Change]int{}, skipped: map[string]int{},
		groups: map[groupKey]int{}, versions: map[string]int{}}
}

func (t *tally) malformed(line int, err error) {
	t.bad++
	if len(t.badLines) < t.maxBad {
		t.badLines = append(t.badLines, Malformed{Line: line, Error: err.Error()})
	}
}

// line handles one line (already trimmed).
func (t *tally) line(cfg *rules.Config, n int, line []byte) {
	if len(line) == 0 {
		return
	}
	t.lines++
	ev, err := parseEvent(line)
	if err != nil {
		t.malformed(n, err)
		return
	}
	t.events++
	if !ev.Time.IsZero() {
		if t.first.IsZero() || ev.Time.Before(t.first) {
			t.first = ev.Time
		}
		if ev.Time.After(t.last) {
			t.last = ev.Time
		}
	}
	if _, ok := t.versions[ev.ConfigVersion]; ok || len(t.versions) < 64 {
		t.versions[ev.ConfigVersion]++
	}
	names, dest, skip := namesOf(ev)
	if skip != "" {
		t.skipped[skip]++
		return
	}
	d := cfg.DecideAll(names)
	if ev.Listener == audit.ListenerProxy || ev.Listener == audit.ListenerProxyTLS {
		d = cfg.DecideAs(names) // an unidentified client may now be asked to identify
	}
	old := Decision{Action: ev.Action, Reason: ev.Reason, Rule: ev.Rule, Ruleset: ev.Ruleset, Segment: ev.Segment}
	now := Decision{Action: d.Action.String(), Reason: string(d.Reason), Rule: d.RuleName(), Ruleset: d.Ruleset(), Segment: d.SegmentName()}
	var c Change
	switch {
	case old.Action == now.Action && old.Reason == now.Reason && old.Rule == now.Rule && old.Ruleset == now.Ruleset:
		t.unchanged++
		return
	case old.Action == now.Action:
		c = RuleChanged
	case now.Action == audit.ActionDeny:
		c = AllowToDeny
	default:
		c = DenyToAllow
	}
	t.changes[c]++
	t.groups[groupKey{change: c, dest: destination(dest, names.Port), old: old, new: now}]++
}

// namesOf rebuilds the names a recorded event was decided on, the name to
// show as its destination, or why it cannot be re-decided.
func namesOf(ev *audit.Event) (n rules.Names, dest, skip string) {
	if !comparable[ev.Reason] {
		return n, "", orUnset(ev.Reason, "event.reason")
	}
	if ev.Action != audit.ActionAllow && ev.Action != audit.ActionDeny {
		return n, "", SkipUnknownAction
	}
	src, err := netip.ParseAddr(ev.SourceIP)
	if err != nil {
		return n, "", SkipNoSource
	}
	n.Source = src.Unmap()
	n.Port = uint16(ev.DestPort)
	n.User, n.Groups = ev.User, ev.UserGroups
	if ev.ECH != nil {
		n.ECH = *ev.ECH
	}
	switch ev.Listener {
	case audit.ListenerProxy, audit.ListenerProxyTLS:
		if ev.Method != "" && ev.Method != "CONNECT" {
			// Plain HTTP: the URL host; the Host header is not recorded.
			if ev.Reason == string(rules.ReasonSNIMismatch) {
				return n, "", SkipHostHeader
			}
			n.Target = first(ev.URLDomain, ev.DestDomain, ev.DestIP)
			dest = n.Target
			break
		}
		// CONNECT: the target, then the ClientHello when it was read (its
		// egress.tls.ech is always recorded); without it the target alone.
		n.Target = first(ev.DestDomain, ev.DestIP)
		dest = n.Target
		if ev.ECH != nil {
			n.TLS = true
			n.Inner, n.HasInner = ev.SNI, ev.SNI != ""
			if n.HasInner {
				dest = n.Inner
			}
		}
	case audit.ListenerTransparentHTTPS:
		n.TLS = true
		n.Inner, n.HasInner = ev.SNI, ev.SNI != ""
		dest = first(ev.SNI, ev.DestDomain, ev.DestIP)
	case audit.ListenerTransparentHTTP:
		n.Inner = first(ev.URLDomain, ev.DestDomain, ev.DestIP)
		n.HasInner = n.Inner != ""
		dest = n.Inner
	default:
		return n, "", SkipUnknownListener
	}
	if n.Target == "" && !n.HasInner && !n.TLS {
		return n, "", SkipNoName
	}
	return n, dest, ""
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func orUnset(s, field string) string {
	if s == "" {
		return "(no " + field + ")"
	}
	return s
}

// destination is the normalised name (or IP), with the port unless 443 or 80.
func destination(raw string, port uint16) string {
	name := raw
	if raw == "" {
		name = "(no name)"
	} else if h, ip, err := hostname.Normalize(raw); err == nil {
		name = h
		if ip.IsValid() {
			name = ip.String()
		}
	}
	if port == 0 || port == 443 || port == 80 {
		return name
	}
	if strings.Contains(name, ":") {
		name = "[" + name + "]"
	}
	return name + ":" + strconv.Itoa(int(port))
}

// merge adds o into t. Each tally's malformed lines are its first ones in
// line order, so the first maxBad of the union are among them.
func (t *tally) merge(o *tally) {
	t.lines += o.lines
	t.events += o.events
	t.unchanged += o.unchanged
	for k, v := range o.changes {
		t.changes[k] += v
	}
	for k, v := range o.skipped {
		t.skipped[k] += v
	}
	for k, v := range o.groups {
		t.groups[k] += v
	}
	for k, v := range o.versions {
		t.versions[k] += v
	}
	t.bad += o.bad
	t.badLines = append(t.badLines, o.badLines...)
	slices.SortFunc(t.badLines, func(a, b Malformed) int { return a.Line - b.Line })
	if len(t.badLines) > t.maxBad {
		t.badLines = t.badLines[:t.maxBad]
	}
	if !o.first.IsZero() && (t.first.IsZero() || o.first.Before(t.first)) {
		t.first = o.first
	}
	if o.last.After(t.last) {
		t.last = o.last
	}
}

func (t *tally) fill(r *Report) {
	r.Lines, r.Events, r.Unchanged = t.lines, t.events, t.unchanged
	r.AllowToDeny, r.DenyToAllow, r.RuleChanged = t.changes[AllowToDeny], t.changes[DenyToAllow], t.changes[RuleChanged]
	r.Malformed, r.MalformedLines = t.bad, t.badLines
	if r.MalformedLines == nil {
		r.MalformedLines = []Malformed{}
	}
	r.First, r.Last = t.first.UTC(), t.last.UTC()
	if t.first.IsZero() {
		r.First, r.Last = time.Time{}, time.Time{}
	}
	r.Skipped = counts(t.skipped, 0)
	for _, c := range r.Skipped {
		r.NotRedecidable += c.Count
	}
	r.Recorded = counts(t.versions, 10)
	order := map[Change]int{AllowToDeny: 0, DenyToAllow: 1, RuleChanged: 2}
	r.Groups = make([]Group, 0, len(t.groups))
	for k, v := range t.groups {
		r.Groups = append(r.Groups, Group{Change: k.change, Count: v, Destination: k.dest, New: k.new, Old: k.old})
	}
	slices.SortFunc(r.Groups, func(a, b Group) int {
		if c := order[a.Change] - order[b.Change]; c != 0 {
			return c
		}
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return cmpStrings(
			[]string{a.Destination, a.New.Segment, a.Old.Segment, a.New.Label(), a.Old.Label(), a.New.Reason, a.Old.Reason},
			[]string{b.Destination, b.New.Segment, b.Old.Segment, b.New.Label(), b.Old.Label(), b.New.Reason, b.Old.Reason})
	})
}

func cmpStrings(a, b []string) int {
	for i := range a {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// counts sorts a map by count descending, then name; limit 0 keeps all.
func counts(m map[string]int, limit int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Name: k, Count: v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Name, b.Name)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
