package audit

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// A strict CEF:0 checker written from the grammar of "Implementing ArcSight
// Common Event Format (CEF)" rev. 25, independent of the encoder:
//
//	CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension
//
//   - header fields: '|' and '\' escaped as \| and \\, no other escape, no CR/LF;
//     vendor and product at most 63 characters, version 31, class id 1023, name 512;
//   - Severity: 0-10 or Unknown, Low, Medium, High, Very-High;
//   - Extension: key=value pairs separated by one space; keys from the
//     dictionary, or custom keys of the VendornameProductnameKeyName form;
//     in values '=' and '\' escaped as \= and \\, line breaks as \n or \r,
//     no other escape and no raw CR/LF; each value within the dictionary's
//     length; numbers, ports, addresses and timestamps of their type; every
//     custom-field slot with its label and the reverse; no key twice.

// cefDictKey is the type and length of a dictionary key egress may write.
type cefDictKey struct {
	typ string // string, ip, port, long, ms
	max int    // characters, strings only
}

var cefDictionary = map[string]cefDictKey{
	"rt": {typ: "ms"}, "act": {"string", 63}, "outcome": {"string", 63}, "reason": {"string", 1023},
	"src": {typ: "ip"}, "spt": {typ: "port"}, "dst": {typ: "ip"}, "dpt": {typ: "port"},
	"dhost": {"string", 1023}, "dvchost": {"string", 100}, "requestMethod": {"string", 1023},
	"request": {"url", 1023}, "in": {typ: "long"}, "out": {typ: "long"}, "msg": {"string", 1023},
	"cs1": {"string", 4000}, "cs2": {"string", 4000}, "cs3": {"string", 4000},
	"cs4": {"string", 4000}, "cs5": {"string", 4000}, "cs6": {"string", 4000},
	"cs1Label": {"string", 1023}, "cs2Label": {"string", 1023}, "cs3Label": {"string", 1023},
	"cs4Label": {"string", 1023}, "cs5Label": {"string", 1023}, "cs6Label": {"string", 1023},
	"cn1": {typ: "long"}, "cn2": {typ: "long"}, "cn3": {typ: "long"},
	"cn1Label": {"string", 1023}, "cn2Label": {"string", 1023}, "cn3Label": {"string", 1023},
	"suser": {"string", 1023}, "sntdom": {"string", 255},
}

// Custom keys: VendornameProductnameExplanatoryKeyName, alphanumeric.
var cefCustomKey = regexp.MustCompile(`^EgressEgress[A-Z][A-Za-z0-9]*$`)

type cefRecord struct {
	header [7]string // version .. severity, unescaped
	ext    map[string]string
	order  []string
}

// strictParseCEF parses one record; real says the values are what egress
// writes in production (addresses, ports), so their types are checked too.
func strictParseCEF(line string, real bool) (*cefRecord, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("raw CR or LF in the record")
	}
	if !utf8.ValidString(line) {
		return nil, fmt.Errorf("invalid UTF-8")
	}
	if !strings.HasPrefix(line, "CEF:") {
		return nil, fmt.Errorf("no CEF: prefix")
	}
	rec := &cefRecord{ext: map[string]string{}}
	i := len("CEF:")
	var cur strings.Builder
	n := 0
	for n < 7 {
		if i >= len(line) {
			return nil, fmt.Errorf("header has %d fields, want 7", n)
		}
		c := line[i]
		switch {
		case c == '\\':
			if i+1 >= len(line) || (line[i+1] != '|' && line[i+1] != '\\') {
				return nil, fmt.Errorf("header field %d: escape other than \\| or \\\\ at %d", n, i)
			}
			cur.WriteByte(line[i+1])
			i += 2
		case c == '|':
			rec.header[n] = cur.String()
			cur.Reset()
			n++
			i++
		default:
			cur.WriteByte(c)
			i++
		}
	}
	if rec.header[0] != "0" {
		return nil, fmt.Errorf("version %q, want 0", rec.header[0])
	}
	for k, max := range map[int]int{1: 63, 2: 63, 3: 31, 4: 1023, 5: 512} {
		if c := utf8.RuneCountInString(rec.header[k]); c > max || c == 0 {
			return nil, fmt.Errorf("header field %d has %d characters (1..%d)", k, c, max)
		}
	}
	switch sev := rec.header[6]; sev {
	case "Unknown", "Low", "Medium", "High", "Very-High":
	default:
		if v, err := strconv.Atoi(sev); err != nil || v < 0 || v > 10 || strconv.Itoa(v) != sev {
			return nil, fmt.Errorf("severity %q", sev)
		}
	}
	return rec, rec.parseExtension(line[i:], real)
}

func (rec *cefRecord) parseExtension(s string, real bool) error {
	if s == "" {
		return nil
	}
	// Unescaped '=' positions; each ends a key that starts after a space.
	var eqs []int
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if j+1 >= len(s) || !strings.ContainsRune(`\=nr`, rune(s[j+1])) {
				return fmt.Errorf("extension: escape other than \\\\ \\= \\n \\r at %d", j)
			}
			j++
		case '=':
			eqs = append(eqs, j)
		}
	}
	if len(eqs) == 0 {
		return fmt.Errorf("extension without key=value: %q", s)
	}
	start := 0
	for k, eq := range eqs {
		key := s[start:eq]
		end := len(s)
		if k+1 < len(eqs) {
			sp := strings.LastIndexByte(s[eq+1:eqs[k+1]], ' ')
			if sp < 0 {
				return fmt.Errorf("extension: two '=' without a space-separated key between them at %d", eqs[k+1])
			}
			end = eq + 1 + sp
		}
		raw := s[eq+1 : end]
		start = end + 1
		// A value may begin or end with spaces: it runs from '=' to the
		// last space before the next key (the spec's rule), so " " is " ".
		var v strings.Builder
		for j := 0; j < len(raw); j++ {
			if raw[j] != '\\' {
				v.WriteByte(raw[j])
				continue
			}
			j++
			switch raw[j] {
			case 'n':
				v.WriteByte('\n')
			case 'r':
				v.WriteByte('\r')
			default:
				v.WriteByte(raw[j])
			}
		}
		if _, dup := rec.ext[key]; dup {
			return fmt.Errorf("extension: key %s twice", key)
		}
		rec.ext[key] = v.String()
		rec.order = append(rec.order, key)
		if err := checkCEFValue(key, v.String(), real); err != nil {
			return err
		}
	}
	for _, slot := range []string{"cs1", "cs2", "cs3", "cs4", "cs5", "cs6", "cn1", "cn2", "cn3"} {
		_, hasV := rec.ext[slot]
		_, hasL := rec.ext[slot+"Label"]
		if hasV != hasL {
			return fmt.Errorf("extension: %s without its label (or the reverse)", slot)
		}
	}
	return nil
}

func checkCEFValue(key, v string, real bool) error {
	d, ok := cefDictionary[key]
	if !ok {
		if !cefCustomKey.MatchString(key) {
			return fmt.Errorf("extension: key %q is neither in the dictionary nor VendornameProductnameKeyName", key)
		}
		return nil
	}
	switch d.typ {
	case "string", "url":
		if c := utf8.RuneCountInString(v); c > d.max {
			return fmt.Errorf("extension %s: %d characters, the dictionary allows %d", key, c, d.max)
		}
		if d.typ == "url" && real {
			u, err := url.ParseRequestURI(v)
			if err != nil || u.Scheme != "http" || u.Host == "" || u.Port() == "" {
				return fmt.Errorf("extension request %q is not an absolute http URL with a port (%v)", v, err)
			}
		}
	case "ip":
		if _, err := netip.ParseAddr(v); err != nil && real {
			return fmt.Errorf("extension %s %q is not an address", key, v)
		}
	case "port":
		if p, err := strconv.Atoi(v); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("extension %s %q is not a port", key, v)
		}
	case "long", "ms":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("extension %s %q is not an integer", key, v)
		}
	}
	return nil
}

// TestCEFStrictGrammar: every fixture (every event kind, hostile and
// over-long values) encodes to a record the strict grammar accepts.
func TestCEFStrictGrammar(t *testing.T) {
	enc, _ := NewEncoderWith(EncoderOptions{Format: "cef", Version: testVersion, Hostname: "egress-7d9f-x2"})
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			line := string(enc.Encode(nil, &fx.e))
			rec, err := strictParseCEF(line, !strings.HasPrefix(fx.name, "hostile"))
			if err != nil {
				t.Fatalf("%v\n%s", err, line)
			}
			if rec.ext["dvchost"] != "egress-7d9f-x2" {
				t.Errorf("dvchost = %q", rec.ext["dvchost"])
			}
		})
	}
}

// TestCEFStrictGrammarRejects: the checker is not a rubber stamp.
func TestCEFStrictGrammarRejects(t *testing.T) {
	for name, line := range map[string]string{
		"six header fields":   `CEF:0|egress|egress|1|rule|allow x|3`,
		"bad header escape":   `CEF:0|egress|egress|1|ru\le|allow x|3|act=allow`,
		"severity 11":         `CEF:0|egress|egress|1|rule|allow x|11|act=allow`,
		"unescaped equals":    `CEF:0|egress|egress|1|rule|allow x|3|act=allow msg=a=b`,
		"bad ext escape":      `CEF:0|egress|egress|1|rule|allow x|3|msg=a\|b`,
		"unknown key":         `CEF:0|egress|egress|1|rule|allow x|3|egressListener=proxy`,
		"label without slot":  `CEF:0|egress|egress|1|rule|allow x|3|cs1Label=segment`,
		"request too long":    `CEF:0|egress|egress|1|rule|allow x|3|request=http://a:80/` + strings.Repeat("a", 1024),
		"request not a URL":   `CEF:0|egress|egress|1|rule|allow x|3|request=http://www.tiktok.com/p\nq`,
		"raw newline":         "CEF:0|egress|egress|1|rule|allow x|3|msg=a\nb",
		"port out of range":   `CEF:0|egress|egress|1|rule|allow x|3|dpt=70000`,
		"duplicate key":       `CEF:0|egress|egress|1|rule|allow x|3|act=allow act=deny`,
		"empty name":          `CEF:0|egress|egress|1|rule||3|act=allow`,
		"version too long":    `CEF:0|egress|egress|` + strings.Repeat("1", 32) + `|rule|allow x|3|act=allow`,
		"not an address":      `CEF:0|egress|egress|1|rule|allow x|3|src=host.example`,
		"name over 512 chars": `CEF:0|egress|egress|1|rule|` + strings.Repeat("é", 513) + `|3|act=allow`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := strictParseCEF(line, true); err == nil {
				t.Fatalf("accepted %q", line)
			}
		})
	}
}

// A 64 KiB hostile path costs one bounded event: the request URL is built
// from the clipped path and cut to the dictionary's 1,023 characters.
func TestCEFRequestBounded(t *testing.T) {
	enc, _ := NewEncoder("cef", testVersion)
	e := Event{Action: ActionDeny, Reason: "rule", URLDomain: "a.example", DestPort: 80,
		URLPath: "/" + strings.Repeat("\n|=\\é", 64<<10/6)}
	allocs := testing.AllocsPerRun(20, func() { _ = enc.Encode(make([]byte, 0, 16<<10), &e) })
	line := string(enc.Encode(nil, &e))
	rec, err := strictParseCEF(line, true)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.ext["request"]); n > 1023 || n < 1000 {
		t.Fatalf("request is %d characters", n)
	}
	if len(line) > 8<<10 || allocs > 20 {
		t.Fatalf("record %d bytes, %v allocations", len(line), allocs)
	}
}
