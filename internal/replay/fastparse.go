package replay

import (
	"errors"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
)

// parseEvent decodes one ECS line: a fast path for the plain lines egress
// writes, audit.ParseECS for everything else. The fast path accepts a line
// only when ParseECS would accept it with the same values in the fields
// replay reads (TestFastParseAgrees): a strict JSON scan of ASCII text
// without escapes, the types of every field ParseECS decodes checked, and the
// same range checks. Anything unusual (escapes, non-ASCII, nulls, floats,
// keys with capitals that encoding/json would fold) falls back.
func parseEvent(line []byte) (*audit.Event, error) {
	p := fastParser{s: line}
	ev := &audit.Event{}
	if p.document(ev) {
		return ev, nil
	}
	return audit.ParseECS(line)
}

var errFallback = errors.New("fallback")

type kind uint8

const (
	kObject kind = iota + 1
	kString
	kInt
	kBool
	kMonitor   // array of {rule, ruleset, action} strings
	kException // {owner, ticket, expires} strings
	kGroups    // user.group.name: an array of strings
)

// field is a member ParseECS decodes; set stores it (nil: checked only).
type field struct {
	kind kind
	kids map[string]*field
	str  func(*audit.Event, string)
	num  func(*audit.Event, int64)
	max  int64
	// legacy: a kBool at its egress 1.x place (tls.client.ech), used only
	// when the line has no egress.tls.ech, as ParseECS does.
	legacy bool
}

func str(f func(*audit.Event, string)) *field { return &field{kind: kString, str: f} }
func num(max int64, f func(*audit.Event, int64)) *field {
	return &field{kind: kInt, num: f, max: max}
}
func obj(kids map[string]*field) *field { return &field{kind: kObject, kids: kids} }

const maxInt = 1<<63 - 1

// ecsSchema is the fields of audit.ECSFields that ParseECS reads, with the
// same types and bounds (TestFastParseFieldList checks it against the list),
// and where each goes in the Event.
var ecsSchema = obj(map[string]*field{
	"@timestamp": str(func(e *audit.Event, s string) { e.Time, _ = time.Parse(time.RFC3339Nano, s) }),
	"event": obj(map[string]*field{
		"id":       str(func(e *audit.Event, s string) { e.ID = s }),
		"action":   str(func(e *audit.Event, s string) { e.Action = s }),
		"reason":   str(func(e *audit.Event, s string) { e.Reason = s }),
		"module":   str(nil),
		"duration": num(maxInt, func(e *audit.Event, n int64) { e.Duration = time.Duration(n) }),
	}),
	"rule": obj(map[string]*field{
		"name":    str(func(e *audit.Event, s string) { e.Rule = s }),
		"ruleset": str(func(e *audit.Event, s string) { e.Ruleset = s }),
	}),
	"egress": obj(map[string]*field{
		"config_version": str(func(e *audit.Event, s string) { e.ConfigVersion = s }),
		"exception":      {kind: kException, kids: exceptionSchema.kids},
		"segment":        str(func(e *audit.Event, s string) { e.Segment = s }),
		"listener":       str(func(e *audit.Event, s string) { e.Listener = s }),
		"monitor":        {kind: kMonitor, kids: monitorSchema.kids},
		"tls": obj(map[string]*field{
			"ja4": str(func(e *audit.Event, s string) { e.JA4 = s }),
			"ech": {kind: kBool},
		}),
		"auth": obj(map[string]*field{
			"method": str(func(e *audit.Event, s string) { e.AuthMethod = s }),
		}),
	}),
	"user": obj(map[string]*field{
		"name":   str(func(e *audit.Event, s string) { e.User = s }),
		"domain": str(func(e *audit.Event, s string) { e.UserDomain = s }),
		"group":  obj(map[string]*field{"name": {kind: kGroups}}),
	}),
	"source": obj(map[string]*field{
		"ip":    str(func(e *audit.Event, s string) { e.SourceIP = s }),
		"port":  num(65535, func(e *audit.Event, n int64) { e.SourcePort = int(n) }),
		"bytes": num(maxInt, func(e *audit.Event, n int64) { e.SourceBytes = n }),
	}),
	"destination": obj(map[string]*field{
		"domain": str(func(e *audit.Event, s string) { e.DestDomain = s }),
		"ip":     str(func(e *audit.Event, s string) { e.DestIP = s }),
		"port":   num(65535, func(e *audit.Event, n int64) { e.DestPort = int(n) }),
		"bytes":  num(maxInt, func(e *audit.Event, n int64) { e.DestBytes = n }),
	}),
	"tls": obj(map[string]*field{
		"client": obj(map[string]*field{
			"server_name": str(func(e *audit.Event, s string) { e.SNI = s }),
			"ja4":         {kind: kString, legacy: true}, // egress 1.x name
			"ech":         {kind: kBool, legacy: true},   // egress 1.x name
		}),
	}),
	"http": obj(map[string]*field{
		"request":  obj(map[string]*field{"method": str(func(e *audit.Event, s string) { e.Method = s })}),
		"response": obj(map[string]*field{"status_code": num(999, func(e *audit.Event, n int64) { e.Status = int(n) })}),
	}),
	"url": obj(map[string]*field{
		"domain": str(func(e *audit.Event, s string) { e.URLDomain = s }),
		"path":   str(func(e *audit.Event, s string) { e.URLPath = s }),
	}),
	"error":    obj(map[string]*field{"message": str(func(e *audit.Event, s string) { e.Error = s })}),
	"observer": obj(map[string]*field{"product": str(nil)}),
})

// exceptionSchema is egress.exception's members; ev.Exception exists while
// they are read.
var exceptionSchema = obj(map[string]*field{
	"owner":   str(func(e *audit.Event, s string) { e.Exception.Owner = s }),
	"ticket":  str(func(e *audit.Event, s string) { e.Exception.Ticket = s }),
	"expires": str(func(e *audit.Event, s string) { e.Exception.Expires = s }),
})

// monitorSchema is the members of egress.monitor's objects; they go to the
// last element of ev.Monitor.
var monitorSchema = obj(map[string]*field{
	"rule":    str(func(e *audit.Event, s string) { e.Monitor[len(e.Monitor)-1].Rule = s }),
	"ruleset": str(func(e *audit.Event, s string) { e.Monitor[len(e.Monitor)-1].Ruleset = s }),
	"action":  str(func(e *audit.Event, s string) { e.Monitor[len(e.Monitor)-1].Action = s }),
})

// maxDepth bounds nesting; deeper lines go to ParseECS.
const maxDepth = 64

type fastParser struct {
	s      []byte
	i      int
	depth  int
	egress bool // event.module or observer.product is "egress"
	// legacyECH and legacyJA4 are tls.client.ech and .ja4, the 1.x places
	// of egress.tls.*.
	legacyECH *bool
	legacyJA4 string
	// sawException, sawMonitor: encoding/json merges a repeated member into
	// what the first one decoded; such lines go to ParseECS.
	sawException, sawMonitor bool
}

// document parses the whole line into ev; false means: use ParseECS.
func (p *fastParser) document(ev *audit.Event) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != errFallback { //nolint:errorlint // sentinel identity
				panic(r)
			}
			ok = false
		}
	}()
	p.ws()
	p.object(ecsSchema, ev, "")
	p.ws()
	if ev.ECH == nil {
		ev.ECH = p.legacyECH
	}
	if ev.JA4 == "" {
		ev.JA4 = p.legacyJA4
	}
	if p.i != len(p.s) || !p.egress || ev.Action == "" {
		return false
	}
	if ts := ev.Time; !ts.IsZero() {
		if y := ts.UTC().Year(); y < 0 || y > 9999 {
			return false
		}
	}
	return true
}

func (p *fastParser) fail() { panic(errFallback) }

func (p *fastParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) expect(c byte) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != c {
		p.fail()
	}
	p.i++
}

func (p *fastParser) peek() byte {
	p.ws()
	if p.i >= len(p.s) {
		p.fail()
	}
	return p.s[p.i]
}

// string reads a string of printable ASCII without escapes.
func (p *fastParser) string() []byte {
	p.expect('"')
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '"' {
			p.i++
			return p.s[start : p.i-1]
		}
		if c < 0x20 || c >= 0x80 || c == '\\' {
			p.fail()
		}
		p.i++
	}
	p.fail()
	return nil
}

// object reads an object whose members follow schema (nil: any members).
// path is "" at the top level, where @timestamp and the egress check live.
func (p *fastParser) object(schema *field, ev *audit.Event, path string) {
	p.expect('{')
	if p.depth++; p.depth > maxDepth {
		p.fail()
	}
	defer func() { p.depth-- }()
	if p.peek() == '}' {
		p.i++
		return
	}
	for {
		key := p.string()
		p.expect(':')
		var f *field
		if schema != nil {
			f = schema.kids[string(key)]
		}
		if f == nil && schema != nil {
			for _, c := range key {
				if 'A' <= c && c <= 'Z' {
					p.fail() // encoding/json might fold it onto a known member
				}
			}
		}
		if f == nil {
			p.value()
		} else {
			p.member(f, ev, path+"."+string(key))
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return
		default:
			p.fail()
		}
	}
}

func (p *fastParser) member(f *field, ev *audit.Event, path string) {
	switch f.kind {
	case kObject:
		if p.peek() != '{' {
			p.fail()
		}
		p.object(f, ev, path)
	case kString:
		if p.peek() != '"' {
			p.fail()
		}
		s := string(p.string())
		if (path == ".event.module" || path == ".observer.product") && s == "egress" {
			p.egress = true
		}
		if path == ".@timestamp" && s != "" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				p.fail()
			}
		}
		switch {
		case f.legacy:
			p.legacyJA4 = s
		case f.str != nil:
			f.str(ev, s)
		}
	case kInt:
		n := p.int()
		if n > f.max {
			p.fail()
		}
		if f.num != nil {
			f.num(ev, n)
		}
	case kBool:
		var b bool
		switch {
		case p.literal("true"):
			b = true
		case p.literal("false"):
		default:
			p.fail()
		}
		if f.legacy {
			p.legacyECH = &b
		} else {
			ev.ECH = &b
		}
	case kException:
		if p.sawException {
			p.fail()
		}
		p.sawException = true
		if p.peek() != '{' {
			p.fail()
		}
		ev.Exception = &audit.Exception{}
		p.object(f, ev, path)
	case kGroups:
		// encoding/json replaces a slice on a repeated member: so does this.
		p.expect('[')
		ev.UserGroups = []string{}
		if p.peek() == ']' {
			p.i++
			return
		}
		for {
			if p.peek() != '"' {
				p.fail()
			}
			ev.UserGroups = append(ev.UserGroups, string(p.string()))
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return
			default:
				p.fail()
			}
		}
	case kMonitor:
		if p.sawMonitor {
			p.fail()
		}
		p.sawMonitor = true
		p.expect('[')
		ev.Monitor = []audit.MonitorHit{} // encoding/json: [] is an empty, non-nil slice
		if p.peek() == ']' {
			p.i++
			return
		}
		for {
			if p.peek() != '{' {
				p.fail()
			}
			ev.Monitor = append(ev.Monitor, audit.MonitorHit{})
			p.object(f, ev, path)
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return
			default:
				p.fail()
			}
		}
	}
}

// int reads a non-negative integer without sign, fraction or exponent.
func (p *fastParser) int() int64 {
	p.ws()
	start := p.i
	var n int64
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		n = n*10 + int64(p.s[p.i]-'0')
		p.i++
	}
	d := p.i - start
	if d == 0 || d > 18 || d > 1 && p.s[start] == '0' {
		p.fail()
	}
	if p.i < len(p.s) && (p.s[p.i] == '.' || p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.fail()
	}
	return n
}

func (p *fastParser) literal(lit string) bool {
	p.ws()
	if len(p.s)-p.i >= len(lit) && string(p.s[p.i:p.i+len(lit)]) == lit {
		p.i += len(lit)
		return true
	}
	return false
}

// value skips any JSON value, checking its syntax (strings as in string).
func (p *fastParser) value() {
	switch c := p.peek(); {
	case c == '{':
		p.object(nil, nil, "-")
	case c == '[':
		p.i++
		if p.depth++; p.depth > maxDepth {
			p.fail()
		}
		defer func() { p.depth-- }()
		if p.peek() == ']' {
			p.i++
			return
		}
		for {
			p.value()
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return
			default:
				p.fail()
			}
		}
	case c == '"':
		p.string()
	case c == 't' && p.literal("true"), c == 'f' && p.literal("false"), c == 'n' && p.literal("null"):
	case c == '-' || '0' <= c && c <= '9':
		p.number()
	default:
		p.fail()
	}
}

// number checks a JSON number.
func (p *fastParser) number() {
	digits := func() int {
		n := 0
		for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.s[p.i] == '-' {
		p.i++
	}
	start := p.i
	if n := digits(); n == 0 || n > 1 && p.s[start] == '0' {
		p.fail()
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			p.fail()
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.fail()
		}
	}
}
