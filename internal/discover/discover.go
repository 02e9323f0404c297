// Package discover owns `egress discover`: from recorded ECS events it finds
// names that no list of the config holds and that clients contact within a
// short window after a hit in one category (the apps' new domains that the
// lists miss), and ranks them as candidates for a human to review. It never
// changes a policy: its output is a list, not a rule.
//
// # Method
//
// Events are taken in @timestamp order (Run merges its inputs by time). For
// each source address a category hit opens a session, or extends the
// session it falls in (hits less than Window apart form one session); an
// event of an unlisted name at time t co-occurs with a session when
// start <= t <= end+Window, i.e. it falls within Window after one of the
// session's hits. Recorded events are not strictly ordered (egress logs a
// tunnel when it closes, stamped with its start), so each source keeps its
// last Sessions sessions and its last Recent unlisted events: an event that
// arrives late still finds its session, and a hit that arrives late still
// finds the events that followed it.
//
// For each candidate name the analysis counts the distinct sources that
// contacted it in a session (Sources), the co-occurring events
// (Cooccurrences), the sessions it appeared in (Sessions) and all its events
// anywhere (Events). From them:
//
//	consistency = Sessions / (sum of the sessions of the sources in Sources)
//	lift        = (Cooccurrences / events in sessions) / (Events / unlisted events)
//	score       = Sources × consistency × log2(lift), 0 when lift <= 1
//
// Lift compares how often a name is contacted right after a category hit
// with how often it is contacted at all, so a CDN or an OS update service
// that everyone contacts all the time has a lift near 1 and a score near 0,
// however many sources contact it; a name contacted only after hits has the
// highest lift possible. Sources and consistency reward support by many
// clients in most of their sessions over chance co-occurrence by a few.
// Names with fewer than MinSources sources are not listed.
//
// # Bounded memory
//
// Everything is capped, so a stream of any length (or one crafted to be
// expensive) runs in bounded memory:
//   - Events per name anywhere are counted in a count-min sketch (4 rows of
//     2^17 counters, conservative update, 2 MiB): the names of every event
//     are never all kept. Its estimate is never below the true count, so
//     lift is never over-estimated.
//   - Candidate names and (name, source) pairs are kept exactly, up to
//     MaxNames and MaxPairs. When a table is full it is pruned as in lossy
//     counting: names with the fewest sources are dropped until both tables
//     are at most half full (Report.Pruned counts them); a dropped name that
//     co-occurs again starts from zero, so its counts are lower bounds.
//   - Sources are capped at MaxSources; events of further sources still
//     count in the background rate but open no session (Report.SourcesOverCap).
//   - Per source: Sessions sessions and Recent events.
package discover

import (
	"cmp"
	"errors"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/rules"
)

// ErrUnknownCategory: Options.Category names no category of the config.
var ErrUnknownCategory = errors.New("discover: unknown category")

// Defaults of Options.
const (
	DefaultWindow     = 60 * time.Second
	DefaultMinSources = 2
	DefaultMaxSources = 1 << 14
	DefaultMaxNames   = 1 << 16
	DefaultMaxPairs   = 1 << 20
	DefaultRecent     = 32
	DefaultSessions   = 8
)

// Skip reasons, as counted in Report.Skipped.
const (
	SkipNoTime   = "no @timestamp"
	SkipNoSource = "no source.ip"
	SkipNoName   = "no destination name (IP literal or invalid)"
)

// Options tune the analysis. Only Category is required.
type Options struct {
	Category   string        // the category whose hits open sessions
	Window     time.Duration // how long after a hit a contact co-occurs; 0: DefaultWindow
	MinSources int           // fewest sources for a name to be listed; 0: DefaultMinSources
	MaxSources int           // source addresses tracked; 0: DefaultMaxSources
	MaxNames   int           // candidate names tracked; 0: DefaultMaxNames
	MaxPairs   int           // (name, source) pairs tracked; 0: DefaultMaxPairs
	Recent     int           // unlisted events kept per source for late hits; 0: DefaultRecent
	Sessions   int           // sessions kept per source for late events; 0: DefaultSessions
}

func (o *Options) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	def(&o.MinSources, DefaultMinSources)
	def(&o.MaxSources, DefaultMaxSources)
	def(&o.MaxNames, DefaultMaxNames)
	def(&o.MaxPairs, DefaultMaxPairs)
	def(&o.Recent, DefaultRecent)
	def(&o.Sessions, DefaultSessions)
}

// Candidate is one name to review.
type Candidate struct {
	Name          string  `json:"name"`
	Score         float64 `json:"score"`
	Sources       int     `json:"sources"`         // distinct sources that contacted it after a hit
	Cooccurrences int     `json:"cooccurrences"`   // its events within a window after a hit
	Sessions      int     `json:"sessions"`        // category sessions it appeared in
	Consistency   float64 `json:"consistency"`     // Sessions / sessions of its Sources
	Lift          float64 `json:"lift"`            // rate after hits / rate anywhere
	Events        int     `json:"events_anywhere"` // its events anywhere (an upper estimate)
}

// Count is a named count.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Report is the outcome of an analysis.
type Report struct {
	Category      string        `json:"category"`
	Config        string        `json:"config"`
	ConfigVersion string        `json:"config_version"`
	Window        time.Duration `json:"-"`
	Inputs        []string      `json:"inputs"`
	First         time.Time     `json:"first_event,omitzero"`
	Last          time.Time     `json:"last_event,omitzero"`

	Lines          int         `json:"lines"`  // non-blank lines read
	Events         int         `json:"events"` // lines that parsed as events
	Malformed      int         `json:"malformed"`
	MalformedLines []Malformed `json:"malformed_lines"`
	Skipped        []Count     `json:"skipped"` // by reason

	Hits           int `json:"hits"`             // events of a name in the category
	HitSources     int `json:"hit_sources"`      // sources with at least one hit
	Sessions       int `json:"sessions"`         // category sessions
	Listed         int `json:"listed"`           // events of names in another list (not candidates)
	Unlisted       int `json:"unlisted"`         // events of names in no list
	InSessions     int `json:"in_sessions"`      // unlisted events within a window after a hit
	SourcesOverCap int `json:"sources_over_cap"` // events of sources beyond MaxSources
	Pruned         int `json:"pruned"`           // candidate names dropped when a table was full

	// Candidates are every name with at least MinSources sources and a
	// positive score, best first (score, then sources, co-occurrences, name).
	Candidates []Candidate `json:"candidates"`
}

// Malformed is a line that is not an egress ECS event.
type Malformed struct {
	Input string `json:"input"`
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// Analyzer accumulates events. It is not safe for concurrent use: Run feeds
// it from one goroutine.
type Analyzer struct {
	cfg    *rules.Config
	cat    int
	opt    Options
	window int64 // ns

	sources map[netip.Addr]uint32
	src     []*source
	names   map[string]uint32
	stats   []nameStat
	pairs   map[pairKey]pairStat
	cms     *countMin

	events, hits, sessions, listed, unlisted, inSessions, overCap, pruned int
	skipped                                                               map[string]int
	first, last                                                           time.Time
}

type source struct {
	n        uint32    // sessions so far (ids 1..n)
	sessions []session // the last Options.Sessions
	recent   []recent  // ring of the last Options.Recent unlisted events
	next     int
}

type session struct {
	id         uint32
	start, end int64 // first and last hit, ns
}

type recent struct {
	t       int64
	name    string
	matched bool
}

type nameStat struct {
	name                    string
	cooc, sources, sessions uint32
}

type pairKey struct{ name, src uint32 }

type pairStat struct{ last, sessions uint32 }

// New returns an analyzer for the category opt.Category of cfg.
func New(cfg *rules.Config, opt Options) (*Analyzer, error) {
	opt.fill()
	cat := cfg.DiscoverCategory(opt.Category)
	if cat < 0 {
		return nil, ErrUnknownCategory
	}
	return &Analyzer{
		cfg: cfg, cat: cat, opt: opt, window: int64(opt.Window),
		sources: map[netip.Addr]uint32{}, names: map[string]uint32{},
		pairs: map[pairKey]pairStat{}, cms: newCountMin(), skipped: map[string]int{},
	}, nil
}

// Add takes one event. Events should come in @timestamp order; disorder is
// tolerated within the per-source memory (see the package comment).
func (a *Analyzer) Add(ev *audit.Event) {
	a.events++
	if ev.Time.IsZero() {
		a.skipped[SkipNoTime]++
		return
	}
	if a.first.IsZero() || ev.Time.Before(a.first) {
		a.first = ev.Time
	}
	if ev.Time.After(a.last) {
		a.last = ev.Time
	}
	addr, err := netip.ParseAddr(ev.SourceIP)
	if err != nil {
		a.skipped[SkipNoSource]++
		return
	}
	addr = addr.Unmap()
	// The names the event was decided on: the SNI (what was contacted), the
	// URL host, the CONNECT target. A hit when any is in the category; the
	// candidate is the first.
	hit, name, listed := false, "", false
	for i, raw := range [...]string{ev.SNI, ev.URLDomain, ev.DestDomain} {
		if raw == "" || (i == 2 && raw == ev.SNI) {
			continue
		}
		n, ip, err := hostname.Normalize(raw)
		if err != nil || ip.IsValid() {
			continue
		}
		in, l := a.cfg.DiscoverInCategory(n, a.cat)
		hit = hit || in
		if name == "" {
			name, listed = n, l
		}
	}
	t := ev.Time.UnixNano()
	switch {
	case hit:
		a.hits++
		if s, sid, ok := a.source(addr); ok {
			a.hit(s, sid, t)
		}
	case name == "":
		a.skipped[SkipNoName]++
	case listed:
		a.listed++
	default:
		a.unlisted++
		a.cms.add(name)
		if s, sid, ok := a.source(addr); ok {
			a.other(s, sid, t, name)
		}
	}
}

func (a *Analyzer) source(addr netip.Addr) (*source, uint32, bool) {
	if id, ok := a.sources[addr]; ok {
		return a.src[id], id, true
	}
	if len(a.src) >= a.opt.MaxSources {
		a.overCap++
		return nil, 0, false
	}
	id := uint32(len(a.src))
	s := &source{}
	a.sources[addr] = id
	a.src = append(a.src, s)
	return s, id, true
}

// hit records a category hit at t: it extends the session it falls in or
// opens one, then matches the recent events that fall within its window.
func (a *Analyzer) hit(s *source, sid uint32, t int64) {
	var ses *session
	for i := range s.sessions {
		x := &s.sessions[i]
		if t >= x.start-a.window && t <= x.end+a.window {
			x.start, x.end = min(x.start, t), max(x.end, t)
			ses = x
			break
		}
	}
	if ses == nil {
		s.n++
		a.sessions++
		nw := session{id: s.n, start: t, end: t}
		if len(s.sessions) < a.opt.Sessions {
			s.sessions = append(s.sessions, nw)
			ses = &s.sessions[len(s.sessions)-1]
		} else {
			oldest := 0
			for i := range s.sessions {
				if s.sessions[i].end < s.sessions[oldest].end {
					oldest = i
				}
			}
			s.sessions[oldest] = nw
			ses = &s.sessions[oldest]
		}
	}
	for i := range s.recent {
		r := &s.recent[i]
		if !r.matched && r.t >= t && r.t <= t+a.window {
			r.matched = true
			a.match(sid, ses.id, r.name)
		}
	}
}

// other records an event of an unlisted name.
func (a *Analyzer) other(s *source, sid uint32, t int64, name string) {
	matched := false
	for _, x := range s.sessions {
		if t >= x.start && t <= x.end+a.window {
			a.match(sid, x.id, name)
			matched = true
			break
		}
	}
	r := recent{t: t, name: name, matched: matched}
	if len(s.recent) < a.opt.Recent {
		s.recent = append(s.recent, r)
		return
	}
	s.recent[s.next] = r
	s.next = (s.next + 1) % len(s.recent)
}

// match counts name as contacted by source sid in its session ses.
func (a *Analyzer) match(sid, ses uint32, name string) {
	a.inSessions++
	if len(a.stats) >= a.opt.MaxNames || len(a.pairs) >= a.opt.MaxPairs {
		a.prune()
	}
	id, ok := a.names[name]
	if !ok {
		id = uint32(len(a.stats))
		a.names[name] = id
		a.stats = append(a.stats, nameStat{name: name})
	}
	st := &a.stats[id]
	st.cooc++
	k := pairKey{name: id, src: sid}
	p, ok := a.pairs[k]
	if !ok {
		st.sources++
	}
	if p.last != ses {
		p.last = ses
		p.sessions++
		st.sessions++
	}
	a.pairs[k] = p
}

// prune drops the names with the fewest sources (and their pairs) until both
// tables are at most half full.
func (a *Analyzer) prune() {
	keep := uint32(2)
	for {
		names, pairs := 0, 0
		for _, st := range a.stats {
			if st.sources >= keep {
				names++
				pairs += int(st.sources)
			}
		}
		if names <= a.opt.MaxNames/2 && pairs <= a.opt.MaxPairs/2 {
			break
		}
		keep *= 2
	}
	remap := make([]uint32, len(a.stats))
	stats := make([]nameStat, 0, len(a.stats)/2)
	a.names = make(map[string]uint32, len(a.stats)/2)
	for i, st := range a.stats {
		if st.sources < keep {
			remap[i] = math.MaxUint32
			a.pruned++
			continue
		}
		remap[i] = uint32(len(stats))
		a.names[st.name] = remap[i]
		stats = append(stats, st)
	}
	pairs := make(map[pairKey]pairStat, len(a.pairs)/2)
	for k, p := range a.pairs {
		if n := remap[k.name]; n != math.MaxUint32 {
			pairs[pairKey{name: n, src: k.src}] = p
		}
	}
	a.stats, a.pairs = stats, pairs
}

// Report ranks the candidates. It may be called more than once.
func (a *Analyzer) Report() *Report {
	r := &Report{
		Category: a.opt.Category, Config: a.cfg.Source, ConfigVersion: a.cfg.Version, Window: a.opt.Window,
		First: a.first, Last: a.last, Events: a.events,
		Hits: a.hits, Sessions: a.sessions, Listed: a.listed, Unlisted: a.unlisted,
		InSessions: a.inSessions, SourcesOverCap: a.overCap, Pruned: a.pruned,
		Candidates: []Candidate{},
	}
	for _, s := range a.src {
		if s.n > 0 {
			r.HitSources++
		}
	}
	for k, n := range a.skipped {
		r.Skipped = append(r.Skipped, Count{Name: k, Count: n})
	}
	slices.SortFunc(r.Skipped, func(x, y Count) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Name, y.Name))
	})
	// The sessions of each name's sources: the denominator of consistency.
	denom := make([]uint64, len(a.stats))
	for k := range a.pairs {
		denom[k.name] += uint64(a.src[k.src].n)
	}
	w, n := float64(a.inSessions), float64(a.unlisted)
	for i, st := range a.stats {
		if int(st.sources) < a.opt.MinSources || w == 0 {
			continue
		}
		events := max(uint64(a.cms.estimate(st.name)), uint64(st.cooc))
		lift := (float64(st.cooc) / w) / (float64(events) / n)
		consistency := 0.0
		if denom[i] > 0 {
			consistency = min(1, float64(st.sessions)/float64(denom[i]))
		}
		if lift <= 1 {
			continue
		}
		score := float64(st.sources) * consistency * math.Log2(lift)
		r.Candidates = append(r.Candidates, Candidate{
			Name: st.name, Score: score, Sources: int(st.sources), Cooccurrences: int(st.cooc),
			Sessions: int(st.sessions), Consistency: consistency, Lift: lift, Events: int(events),
		})
	}
	slices.SortFunc(r.Candidates, func(x, y Candidate) int {
		return cmp.Or(cmp.Compare(y.Score, x.Score), cmp.Compare(y.Sources, x.Sources),
			cmp.Compare(y.Cooccurrences, x.Cooccurrences), cmp.Compare(x.Name, y.Name))
	})
	return r
}

// countMin is a count-min sketch with conservative update: estimate(x) is
// never below the number of add(x) calls, and exceeds it by at most
// e/width × total adds with probability 1 - e^-depth.
type countMin struct {
	rows [cmDepth][]uint32
}

const (
	cmDepth = 4
	cmWidth = 1 << 17
)

func newCountMin() *countMin {
	c := &countMin{}
	for i := range c.rows {
		c.rows[i] = make([]uint32, cmWidth)
	}
	return c
}

// cmHash is FNV-1a, split for double hashing (deterministic, so reports
// are reproducible).
func cmHash(name string) (uint32, uint32) {
	v := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		v ^= uint64(name[i])
		v *= 1099511628211
	}
	return uint32(v), uint32(v>>32) | 1
}

func (c *countMin) add(name string) {
	h1, h2 := cmHash(name)
	var idx [cmDepth]uint32
	m := uint32(math.MaxUint32)
	for i := range c.rows {
		idx[i] = (h1 + uint32(i)*h2) % cmWidth
		m = min(m, c.rows[i][idx[i]])
	}
	if m == math.MaxUint32 {
		return
	}
	for i := range c.rows {
		if c.rows[i][idx[i]] == m {
			c.rows[i][idx[i]]++
		}
	}
}

func (c *countMin) estimate(name string) uint32 {
	h1, h2 := cmHash(name)
	m := uint32(math.MaxUint32)
	for i := range c.rows {
		m = min(m, c.rows[i][(h1+uint32(i)*h2)%cmWidth])
	}
	return m
}
