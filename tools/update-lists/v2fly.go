package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Kind is the type of one line of a v2fly/domain-list-community data file.
type Kind string

// The line kinds of the v2fly format. Only KindDomain and KindFull become list
// entries; regular expressions and keywords cannot be expressed as a name
// pattern and are skipped (and counted) by the resolver.
const (
	KindDomain  Kind = "domain"  // "name" or "domain:name": name and subdomains
	KindFull    Kind = "full"    // "full:name": exactly name
	KindInclude Kind = "include" // "include:file [@attr] [@-attr]"
	KindRegexp  Kind = "regexp"  // "regexp:" (and the older "regex:")
	KindKeyword Kind = "keyword" // "keyword:"
)

// Errors of the v2fly parser.
var (
	ErrEmptyValue  = errors.New("empty value")
	ErrUnknownType = errors.New("unknown line type")
	ErrBadAttr     = errors.New("malformed attribute")
	ErrTooLong     = errors.New("file too large")
)

// maxFileBytes bounds a single data file (the largest v2fly files are ~200 KB).
const maxFileBytes = 4 << 20

// Line is one meaningful line of a data file.
type Line struct {
	Kind  Kind
	Value string // lower-cased name, file name for includes, raw pattern otherwise
	// Attrs are the line's attributes without '@' ("ads", "!cn").
	Attrs []string
	// For includes: only entries carrying every Must attribute and none of the
	// MustNot attributes are taken from the included file.
	Must, MustNot []string
	LineNo        int
}

// HasAttr reports whether the line carries attribute a.
func (l Line) HasAttr(a string) bool {
	for _, x := range l.Attrs {
		if x == a {
			return true
		}
	}
	return false
}

// ParseV2fly parses one data file. Comments start at '#' anywhere on a line.
// A malformed line does not stop the parse: it is skipped and reported in
// bad, naming the file and line (upstream files occasionally carry one, e.g. a
// comment typed with a full-width '＃'). err is for unreadable input only.
func ParseV2fly(file string, r io.Reader) (lines []Line, bad []error, err error) {
	var out []Line
	sc := bufio.NewScanner(io.LimitReader(r, maxFileBytes+1))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n, total := 0, 0
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > maxFileBytes {
			return nil, bad, fmt.Errorf("%s: %w", file, ErrTooLong)
		}
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		l, err := parseLine(fields)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s:%d: %w: %q", file, n, err, strings.TrimSpace(text)))
			continue
		}
		l.LineNo = n
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, bad, fmt.Errorf("%s: %w", file, err)
	}
	return out, bad, nil
}

func parseLine(fields []string) (Line, error) {
	var l Line
	head := fields[0]
	kind, value := KindDomain, head
	if i := strings.IndexByte(head, ':'); i >= 0 {
		switch prefix := head[:i]; prefix {
		case "domain":
			kind = KindDomain
		case "full":
			kind = KindFull
		case "include":
			kind = KindInclude
		case "regexp", "regex":
			kind = KindRegexp
		case "keyword":
			kind = KindKeyword
		default:
			return l, fmt.Errorf("%w %q", ErrUnknownType, prefix)
		}
		value = head[i+1:]
	}
	if value == "" {
		return l, ErrEmptyValue
	}
	if kind != KindRegexp && kind != KindKeyword {
		value = strings.ToLower(value)
	}
	l.Kind, l.Value = kind, value
	for _, f := range fields[1:] {
		if len(f) < 2 || f[0] != '@' {
			return l, fmt.Errorf("%w %q", ErrBadAttr, f)
		}
		a := f[1:]
		switch {
		case kind == KindInclude && strings.HasPrefix(a, "-"):
			if len(a) == 1 {
				return l, fmt.Errorf("%w %q", ErrBadAttr, f)
			}
			l.MustNot = append(l.MustNot, a[1:])
		case kind == KindInclude:
			l.Must = append(l.Must, a)
		default:
			l.Attrs = append(l.Attrs, a)
		}
	}
	return l, nil
}

// Fetcher returns the content of one data file by name.
type Fetcher func(name string) ([]byte, error)

// Entry is one name taken from the v2fly data, with where it came from.
type Entry struct {
	Name   string
	Full   bool // a full: line (exact name in v2fly; a list entry also covers subdomains)
	Source string
	Attrs  []string
}

// Stats counts what the resolver took and skipped.
type Stats struct {
	Taken, Regexps, Keywords, AttrSkipped, Malformed int
}

// maxIncludeDepth bounds include chains (v2fly's own are a few levels deep).
const maxIncludeDepth = 16

// Resolver expands a data file with its includes.
type Resolver struct {
	Fetch     Fetcher
	SkipAttrs []string // entries carrying any of these attributes are dropped
	Warn      func(error)
	Stats     Stats
	cache     map[string][]Line
}

// ErrIncludeCycle is returned for an include loop or an over-deep chain.
var ErrIncludeCycle = errors.New("include cycle or chain too deep")

// Resolve returns the entries of file, includes followed.
func (r *Resolver) Resolve(file string) ([]Entry, error) {
	return r.resolve(file, nil, nil, map[string]bool{}, 0)
}

func (r *Resolver) lines(file string) ([]Line, error) {
	if r.cache == nil {
		r.cache = map[string][]Line{}
	}
	if ls, ok := r.cache[file]; ok {
		return ls, nil
	}
	b, err := r.Fetch(file)
	if err != nil {
		return nil, err
	}
	ls, bad, err := ParseV2fly(file, strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	r.Stats.Malformed += len(bad)
	for _, e := range bad {
		if r.Warn != nil {
			r.Warn(e)
		}
	}
	r.cache[file] = ls
	return ls, nil
}

func (r *Resolver) resolve(file string, must, mustNot []string, active map[string]bool, depth int) ([]Entry, error) {
	if active[file] || depth > maxIncludeDepth {
		return nil, fmt.Errorf("%s: %w", file, ErrIncludeCycle)
	}
	active[file] = true
	defer delete(active, file)
	ls, err := r.lines(file)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, l := range ls {
		if l.Kind == KindInclude {
			sub, err := r.resolve(l.Value, append(append([]string{}, must...), l.Must...),
				append(append([]string{}, mustNot...), l.MustNot...), active, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		if !attrsMatch(l, must, mustNot) {
			continue
		}
		switch l.Kind {
		case KindRegexp:
			r.Stats.Regexps++
			continue
		case KindKeyword:
			r.Stats.Keywords++
			continue
		}
		if r.skipped(l) {
			r.Stats.AttrSkipped++
			continue
		}
		r.Stats.Taken++
		out = append(out, Entry{Name: l.Value, Full: l.Kind == KindFull,
			Source: fmt.Sprintf("%s:%d", file, l.LineNo), Attrs: l.Attrs})
	}
	return out, nil
}

func attrsMatch(l Line, must, mustNot []string) bool {
	for _, a := range must {
		if !l.HasAttr(a) {
			return false
		}
	}
	for _, a := range mustNot {
		if l.HasAttr(a) {
			return false
		}
	}
	return true
}

func (r *Resolver) skipped(l Line) bool {
	for _, a := range r.SkipAttrs {
		if l.HasAttr(a) {
			return true
		}
	}
	return false
}
