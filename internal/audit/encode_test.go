package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const testVersion = "1.2.3-test"

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)

// hostile is a string meant to break or forge records, marked with the field
// it is put in so that leaking into a neighbour shows.
func hostile(field string) string {
	return field + "\"q'|p\\b=e\nn\rr\x00z\tt é日本🙂 \xff\xc3 \u2028\u0085\x1b[31m" +
		` cs2=forged act=allow" ,"event":{"action":"allow"}|7|CEF:0|x`
}

type fixture struct {
	name string
	e    Event
}

func fixtures() []fixture {
	long := strings.Repeat("/ab", 600) + strings.Repeat("é", 600) // crosses MaxFieldLen inside a rune
	return []fixture{
		{"connect-allow-tunnel", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000001", Action: "allow", Reason: "rule",
			Rule: "institutional-accounts", Ruleset: "communications", ConfigVersion: "sha256:3f2a9c",
			Exception: &Exception{Owner: "communication@ministry.example", Ticket: "SEC-2023-114", Expires: "2027-03-31"},
			Segment:   "communications", Listener: "proxy",
			SourceIP: "10.20.5.7", SourcePort: 51234, DestDomain: "www.tiktok.com", DestIP: "203.0.113.10", DestPort: 443,
			SNI: "www.tiktok.com", JA4: "t13d1516h2_8daaf6152771_02713d6af862", ECH: ptr(true),
			SourceBytes: 1843, DestBytes: 53211, Duration: 2500 * time.Millisecond,
		}},
		{"http-deny-monitor", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000002", Action: "deny", Reason: "rule",
			Rule: "no-social-media", Ruleset: "government-baseline", ConfigVersion: "sha256:3f2a9c",
			Segment: "ministry", Listener: "proxy",
			Monitor: []MonitorHit{
				{Rule: "no-video", Ruleset: "government-baseline", Action: "deny"},
				{Rule: "audit-all", Ruleset: "ministry", Action: "allow"},
			},
			SourceIP: "10.20.9.9", SourcePort: 40000, DestDomain: "facebook.com", DestPort: 80,
			Method: "GET", URLDomain: "facebook.com", URLPath: "/login", Status: 403,
		}},
		{"transparent-malformed", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000003", Action: "deny", Reason: "malformed_client_hello",
			ConfigVersion: "sha256:3f2a9c", Segment: "ministry", Listener: "transparent_https",
			SourceIP: "10.20.1.1", SourcePort: 1, DestIP: "198.51.100.7", DestPort: 443, ECH: ptr(false),
		}},
		{"unknown-source-v6", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000004", Action: "deny", Reason: "unknown_source",
			Listener: "proxy", SourceIP: "2001:db8::99", SourcePort: 60000, DestDomain: "example.org", DestPort: 443,
		}},
		{"dial-error-v6", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000005", Action: "allow", Reason: "default",
			Segment: "ministry", Ruleset: "ministry", Listener: "transparent_http",
			SourceIP: "10.20.1.2", SourcePort: 2, DestIP: "2001:db8::1", DestPort: 80,
			Method: "POST", URLDomain: "example.net", URLPath: "/", Status: 502,
			Error: "dial tcp [2001:db8::1]:80: connect: connection refused", Duration: time.Millisecond,
		}},
		{"closed-tunnel-zero-bytes", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000006", Action: "allow", Reason: "default",
			Segment: "ministry", Ruleset: "ministry", Listener: "proxy", Exception: &Exception{},
			SourceIP: "10.20.1.3", SourcePort: 3, DestDomain: "example.com", DestIP: "93.184.215.14", DestPort: 443,
			SNI: "example.com", ECH: ptr(false), Duration: 5 * time.Second,
		}},
		{"hostile", Event{
			Time: t0, ID: hostile("id"), Action: hostile("action"), Reason: hostile("reason"),
			Rule: hostile("rule"), Ruleset: hostile("ruleset"), ConfigVersion: hostile("cv"),
			Exception: &Exception{Owner: hostile("owner"), Ticket: hostile("ticket"), Expires: hostile("expires")},
			Segment:   hostile("segment"), Listener: hostile("listener"),
			Monitor:  []MonitorHit{{Rule: hostile("mrule"), Ruleset: hostile("mruleset"), Action: hostile("maction")}},
			SourceIP: hostile("src"), SourcePort: 65535, DestDomain: hostile("dhost"), DestIP: hostile("dst"), DestPort: 1,
			SNI: hostile("sni"), JA4: hostile("ja4"), ECH: ptr(true), Method: hostile("method"),
			URLDomain: hostile("udomain"), URLPath: hostile("upath"), Status: 999,
			SourceBytes: 1 << 62, DestBytes: 0, Duration: 1, Error: hostile("error"),
			User: hostile("user"), UserDomain: hostile("udom"), UserGroups: []string{hostile("g1"), hostile("g2")}, AuthMethod: hostile("auth"),
		}},
		{"transparent-no-sni", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000009", Action: "deny", Reason: "missing_sni",
			ConfigVersion: "sha256:3f2a9c", Segment: "ministry", Listener: "transparent_https",
			SourceIP: "10.20.1.4", SourcePort: 4, DestIP: "198.51.100.8", DestPort: 443, ECH: ptr(false),
			JA4: "t13i0000h1_000000000000_000000000000",
		}},
		{"transparent-no-sni-no-destination", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-00000000000a", Action: "deny", Reason: "missing_sni",
			ConfigVersion: "sha256:3f2a9c", Segment: "ministry", Listener: "transparent_https",
			SourceIP: "10.20.1.5", SourcePort: 5, DestPort: 443, ECH: ptr(false),
		}},
		{"http-allow-port-escaped-path", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-00000000000b", Action: "allow", Reason: "default",
			Segment: "ministry", Ruleset: "ministry", Listener: "proxy",
			SourceIP: "10.20.1.6", SourcePort: 6, DestDomain: "www.example.org", DestIP: "192.0.2.80", DestPort: 8080,
			Method: "GET", URLDomain: "www.example.org", URLPath: "/p\nq|=\\/ é", Status: 200,
			SourceBytes: 312, DestBytes: 4096, Duration: 20 * time.Millisecond,
		}},
		{"hostile-long", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-000000000008", Action: "deny", Reason: "invalid_host",
			Listener: "proxy", DestDomain: long, URLPath: long, Segment: "\xff" + long,
		}},
		{"connect-allow-identified", Event{
			Time: t0, ID: "0195ab2c-0000-7000-8000-0000000000a1", Action: "allow", Reason: "rule",
			Rule: "institutional-tiktok", Ruleset: "ministry", ConfigVersion: "sha256:3f2a9c",
			Segment: "ministry", Listener: "proxy_tls", User: "alice", UserDomain: "MINISTRY.EXAMPLE",
			UserGroups: []string{"communication", "staff"}, AuthMethod: "negotiate",
			SourceIP: "10.20.5.8", SourcePort: 51235, DestDomain: "www.tiktok.com", DestIP: "203.0.113.10", DestPort: 443,
			SNI: "www.tiktok.com", ECH: ptr(false), Method: "CONNECT", Status: 200,
		}},
	}
}

// The golden files hold one encoded record per line, in fixture order.
func TestGolden(t *testing.T) {
	for _, format := range []string{"ecs", "cef"} {
		t.Run(format, func(t *testing.T) {
			enc, err := NewEncoder(format, testVersion)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, f := range fixtures() {
				got = enc.Encode(got, &f.e)
				got = append(got, '\n')
			}
			path := filepath.Join("testdata", format+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
				for i := range min(len(gl), len(wl)) {
					if gl[i] != wl[i] {
						t.Fatalf("line %d differs (run with -update if intended):\n got %s\nwant %s", i+1, gl[i], wl[i])
					}
				}
				t.Fatalf("golden file %s differs in length (run with -update if intended)", path)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.name, func(t *testing.T) { checkEncodings(t, &f.e) })
	}
}

// checkEncodings asserts both encodings of e are one line each and decode back
// to e's values (after the documented sanitising).
func checkEncodings(t *testing.T, e *Event) {
	t.Helper()
	for _, format := range []string{"ecs", "cef"} {
		enc, err := NewEncoder(format, testVersion)
		if err != nil {
			t.Fatal(err)
		}
		line := enc.Encode(nil, e)
		if i := bytes.IndexAny(line, "\n\r\x00"); i >= 0 {
			t.Fatalf("%s: control byte %q at %d in %q", format, line[i], i, line)
		}
		if !utf8.Valid(line) {
			t.Fatalf("%s: invalid UTF-8 in %q", format, line)
		}
		for _, r := range []rune{0x85, 0x2028, 0x2029} {
			if bytes.ContainsRune(line, r) {
				t.Fatalf("%s: line break rune %U in %q", format, r, line)
			}
		}
		switch format {
		case "ecs":
			checkECS(t, e, line)
		case "cef":
			checkCEF(t, e, line)
		}
	}
}

// jsonSan is what a string becomes through the ECS encoding and back.
func jsonSan(s string) string {
	s = clip(s)
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte, one per byte
		i += n
	}
	return b.String()
}

// cefSan is what a string becomes through a CEF extension value and back.
func cefSan(s string, header bool) string {
	s = clip(s)
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case (r == '\n' || r == '\r') && !header:
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func checkECS(t *testing.T, e *Event, line []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("ecs: not JSON: %v\n%s", err, line)
	}
	if len(m) == 0 || m["ecs"] == nil || m["observer"] == nil {
		t.Fatalf("ecs: missing ecs/observer in %s", line)
	}
	if e.SourceIP != "" {
		src, _ := m["source"].(map[string]any)
		if src == nil || src["ip"] != jsonSan(e.SourceIP) {
			t.Fatalf("ecs: source.ip not nested as {\"source\":{\"ip\":...}}: %s", line)
		}
	}
	got, err := ParseECS(line)
	if err != nil {
		t.Fatalf("ParseECS: %v\n%s", err, line)
	}
	want := sanitizedECS(e)
	if !got.Time.Equal(want.Time) {
		t.Errorf("ecs: time %v, want %v", got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ecs round trip:\n got %+v\nwant %+v\nline %s", got, want, line)
	}
}

// sanitizedECS is e as ParseECS returns it from e's encoding.
func sanitizedECS(e *Event) *Event {
	w := *e
	for _, p := range []*string{&w.ID, &w.Action, &w.Reason, &w.Rule, &w.Ruleset, &w.ConfigVersion,
		&w.Segment, &w.Listener, &w.SourceIP, &w.DestDomain, &w.DestIP, &w.SNI, &w.JA4, &w.Method,
		&w.URLDomain, &w.URLPath, &w.Error} {
		*p = jsonSan(*p)
	}
	if e.Exception != nil {
		w.Exception = &Exception{jsonSan(e.Exception.Owner), jsonSan(e.Exception.Ticket), jsonSan(e.Exception.Expires)}
	}
	w.Monitor = nil
	for _, h := range e.Monitor {
		w.Monitor = append(w.Monitor, MonitorHit{jsonSan(h.Rule), jsonSan(h.Ruleset), jsonSan(h.Action)})
	}
	if w.Duration < 0 {
		w.Duration = 0
	}
	if !e.hasBytes() {
		w.SourceBytes, w.DestBytes = 0, 0
	}
	return &w
}

// parseCEF is a small reference parser: the seven header fields (\| and \\
// unescaped) and the extension as a map (\=, \\, \n, \r unescaped). A key is
// the alphanumeric word before an unescaped '='; a value runs to the space before
// the next key. Duplicate keys and stray escapes are errors.
func parseCEF(line string) ([]string, map[string]string, error) {
	var hdr []string
	var cur strings.Builder
	i := 0
	for i < len(line) && len(hdr) < 7 {
		switch c := line[i]; c {
		case '\\':
			if i+1 >= len(line) || (line[i+1] != '|' && line[i+1] != '\\') {
				return nil, nil, fmt.Errorf("header: bad escape at %d", i)
			}
			cur.WriteByte(line[i+1])
			i += 2
		case '|':
			hdr = append(hdr, cur.String())
			cur.Reset()
			i++
		default:
			cur.WriteByte(c)
			i++
		}
	}
	if len(hdr) != 7 {
		return nil, nil, fmt.Errorf("header: %d fields", len(hdr))
	}
	rest := line[i:]
	var eqs []int
	for j := 0; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '=':
			eqs = append(eqs, j)
		}
	}
	ext := map[string]string{}
	keyStart := 0
	for n, eq := range eqs {
		key := rest[keyStart:eq]
		if key == "" || strings.IndexFunc(key, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) >= 0 {
			return nil, nil, fmt.Errorf("extension: bad key %q", key)
		}
		end := len(rest)
		if n+1 < len(eqs) {
			sp := strings.LastIndexByte(rest[eq+1:eqs[n+1]], ' ')
			if sp < 0 {
				return nil, nil, fmt.Errorf("extension: no space before key at %d", eqs[n+1])
			}
			end = eq + 1 + sp
			keyStart = end + 1
		}
		v, err := unescapeCEF(rest[eq+1 : end])
		if err != nil {
			return nil, nil, err
		}
		if _, dup := ext[key]; dup {
			return nil, nil, fmt.Errorf("extension: duplicate key %q", key)
		}
		ext[key] = v
	}
	if len(eqs) == 0 && rest != "" {
		return nil, nil, fmt.Errorf("extension without key: %q", rest)
	}
	return hdr, ext, nil
}

func unescapeCEF(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("extension: trailing backslash")
		}
		i++
		switch s[i] {
		case '\\', '=':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("extension: bad escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

// wantCEF is the header and extension e must produce, restated from docs/siem.md.
func wantCEF(e *Event, hostname string, legacy bool) ([]string, map[string]string) {
	sevs := map[string]string{"allow": "3", "deny": "5"}
	sev, ok := sevs[e.Action]
	if !ok {
		sev = "4"
	}
	or := func(s, d string) string {
		if s == "" {
			return d
		}
		return cefSan(s, true)
	}
	name := e.Action
	if name == "" {
		name = "decision"
	}
	dest := ""
	for _, s := range []string{e.DestDomain, e.SNI, e.URLDomain, e.DestIP} {
		if s != "" {
			dest = s
			break
		}
	}
	switch {
	case dest != "" && e.DestPort > 0:
		name += " " + net.JoinHostPort(dest, strconv.Itoa(e.DestPort))
	case dest != "":
		name += " " + dest
	case e.DestPort > 0 && e.Reason != "":
		name += fmt.Sprintf(" port %d without destination (%s)", e.DestPort, e.Reason)
	case e.Reason != "":
		name += " without destination (" + e.Reason + ")"
	}
	name = cefSan(clipRunes(name, 512), true)
	hdr := []string{"CEF:0", "egress", "egress", testVersion, or(clipRunes(e.Reason, 1023), "decision"), name, sev}

	x := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			x[k] = cefSan(v, false)
		}
	}
	// setN: the dictionary's length for the key, in characters.
	setN := func(k, v string, n int) { set(k, clipRunes(v, n)) }
	num := func(k string, v int64, keep bool) {
		if keep {
			x[k] = strconv.FormatInt(v, 10)
		}
	}
	x["rt"] = strconv.FormatInt(e.Time.UnixMilli(), 10)
	setN("act", e.Action, 63)
	setN("outcome", e.outcome(), 63)
	setN("reason", e.Reason, 1023)
	set("src", e.SourceIP)
	num("spt", int64(e.SourcePort), e.SourcePort != 0)
	set("dst", e.DestIP)
	num("dpt", int64(e.DestPort), e.DestPort != 0)
	setN("dhost", e.DestDomain, 1023)
	setN("dvchost", hostname, 100)
	setN("requestMethod", e.Method, 1023)
	if e.URLDomain != "" || e.URLPath != "" {
		// A URL again: host:port and the path percent-encoded, cut at 1,023.
		h := e.URLDomain
		if h == "" {
			h = e.DestDomain
		}
		if e.DestPort > 0 {
			h = net.JoinHostPort(h, strconv.Itoa(e.DestPort))
		}
		p := clip(e.URLPath)
		h = clip(h)
		if p != "" && p[0] != '/' {
			p = "/" + p
		}
		u := (&url.URL{Scheme: "http", Host: h, Path: p}).String()
		if len(u) > 1023 { // url.URL.String is ASCII: bytes are characters
			u = u[:1023]
			for strings.HasSuffix(u[:len(u)-1], "%") || strings.HasSuffix(u, "%") {
				u = u[:strings.LastIndexByte(u, '%')]
			}
		}
		set("request", u)
	}
	num("in", e.SourceBytes, e.hasBytes())
	num("out", e.DestBytes, e.hasBytes())
	for i, p := range []struct{ label, v string }{
		{"segment", e.Segment}, {"rule", e.Rule}, {"sni", e.SNI},
		{"ruleset", e.Ruleset}, {"eventId", e.ID}, {"ja4", e.JA4},
	} {
		if p.v != "" {
			x[fmt.Sprintf("cs%dLabel", i+1)] = p.label
			setN(fmt.Sprintf("cs%d", i+1), p.v, 4000)
		}
	}
	if e.Status != 0 {
		x["cn1Label"], x["cn1"] = "status", strconv.Itoa(e.Status)
	}
	if e.Duration > 0 {
		x["cn2Label"], x["cn2"] = "durationNs", strconv.FormatInt(int64(e.Duration), 10)
	}
	if e.ECH != nil {
		x["cn3Label"], x["cn3"] = "ech", map[bool]string{true: "1", false: "0"}[*e.ECH]
	}
	setN("msg", e.Error, 1023)
	prefixes := []string{"EgressEgress"}
	if legacy {
		prefixes = append(prefixes, "egress")
	}
	for _, p := range prefixes {
		set(p+"Listener", e.Listener)
		set(p+"ConfigVersion", e.ConfigVersion)
		if e.Exception != nil {
			set(p+"ExceptionOwner", e.Exception.Owner)
			set(p+"ExceptionTicket", e.Exception.Ticket)
			set(p+"ExceptionExpires", e.Exception.Expires)
		}
	}
	return hdr, x
}

func checkCEF(t *testing.T, e *Event, line []byte) {
	t.Helper()
	hdr, ext, err := parseCEF(string(line))
	if err != nil {
		t.Fatalf("cef: %v\n%s", err, line)
	}
	if _, err := strictParseCEF(string(line), false); err != nil {
		t.Fatalf("cef: the strict grammar rejects the record: %v\n%s", err, line)
	}
	wantHdr, wantExt := wantCEF(e, "", false)
	if !reflect.DeepEqual(hdr, wantHdr) {
		t.Errorf("cef header:\n got %q\nwant %q", hdr, wantHdr)
	}
	if len(e.Monitor) > 0 {
		var hits []MonitorHit
		if err := json.Unmarshal([]byte(ext["EgressEgressMonitor"]), &hits); err != nil {
			t.Errorf("cef: EgressEgressMonitor is not a JSON list: %v: %q", err, ext["EgressEgressMonitor"])
		} else if want := sanitizedECS(e).Monitor; !reflect.DeepEqual(hits, want) {
			t.Errorf("cef: EgressEgressMonitor %+v, want %+v", hits, want)
		}
		delete(ext, "EgressEgressMonitor")
	}
	if !reflect.DeepEqual(ext, wantExt) {
		for k, v := range wantExt {
			if ext[k] != v {
				t.Errorf("cef %s = %q, want %q", k, ext[k], v)
			}
		}
		for k, v := range ext {
			if _, ok := wantExt[k]; !ok {
				t.Errorf("cef: unexpected key %s=%q", k, v)
			}
		}
		t.Logf("line: %s", line)
	}
}

func TestCEFHeaderSpec(t *testing.T) {
	e := fixtures()[0].e
	enc, _ := NewEncoder("cef", "1.0")
	got := string(enc.Encode(nil, &e))
	const prefix = "CEF:0|egress|egress|1.0|rule|allow www.tiktok.com:443|3|"
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("got %s\nwant prefix %s", got, prefix)
	}
	for _, s := range []string{" cs1Label=segment cs1=communications ", " cs2Label=rule cs2=institutional-accounts ", " cs3Label=sni cs3=www.tiktok.com "} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in %s", s, got)
		}
	}
}

func TestNewEncoderUnknown(t *testing.T) {
	if _, err := NewEncoder("json", ""); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
}

func TestParseECSRejects(t *testing.T) {
	for name, line := range map[string]string{
		"not json":        `hello`,
		"array":           `[1,2]`,
		"foreign":         `{"event":{"action":"allow","module":"nginx"}}`,
		"no action":       `{"event":{"module":"egress"}}`,
		"bad time":        `{"@timestamp":"yesterday","event":{"module":"egress","action":"deny"}}`,
		"port range":      `{"event":{"module":"egress","action":"deny"},"source":{"port":70000}}`,
		"negative bytes":  `{"event":{"module":"egress","action":"deny"},"source":{"bytes":-1}}`,
		"trailing object": `{"event":{"module":"egress","action":"deny"}}{}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseECS([]byte(line)); !errors.Is(err, ErrNotEvent) {
				t.Fatalf("err = %v, want ErrNotEvent", err)
			}
		})
	}
}

func TestParseECSIgnoresShipperFields(t *testing.T) {
	line := `{"@timestamp":"2026-03-01T12:30:45Z","agent":{"type":"filebeat"},"event":{"module":"egress","action":"deny","reason":"rule","dataset":"egress.decision"},"source":{"ip":"10.0.0.1","geo":{"country_iso_code":"FR"}},"destination":{"domain":"x.example","port":443},"egress":{"listener":"proxy","segment":"s"}}`
	e, err := ParseECS([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if e.SourceIP != "10.0.0.1" || e.DestDomain != "x.example" || e.DestPort != 443 || e.Listener != "proxy" || e.Segment != "s" || e.Reason != "rule" {
		t.Fatalf("got %+v", e)
	}
}

func TestClip(t *testing.T) {
	s := strings.Repeat("a", MaxFieldLen-1) + "é"
	if got := clip(s); got != strings.Repeat("a", MaxFieldLen-1) {
		t.Fatalf("clip cut inside a rune: %q", got[len(got)-3:])
	}
	if got := clip("short"); got != "short" {
		t.Fatal(got)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("a", "b", "c", "d")
	f.Add(hostile("x"), "\\", "=", "|")
	f.Add("\xff\xfe", "\u2028", "\r\n", "é")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		// Every event egress writes has an action (ParseECS rejects one
		// without); whatever its text.
		action := b
		if action == "" {
			action = "deny"
		}
		e := &Event{
			Time: t0, ID: a, Action: action, Reason: c, Rule: d, Ruleset: a, Segment: b, Listener: c,
			Exception: &Exception{Owner: d, Ticket: a, Expires: b}, Monitor: []MonitorHit{{c, d, a}},
			SourceIP: b, SourcePort: len(a), DestDomain: c, DestIP: d, DestPort: len(b), SNI: a, JA4: b,
			Method: c, URLDomain: d, URLPath: a, Error: b, ConfigVersion: c, Duration: time.Duration(len(d)),
		}
		checkEncodings(t, e)
	})
}

func FuzzParseECS(f *testing.F) {
	for _, fx := range fixtures() {
		f.Add(ecsEncoder{EncoderOptions{Version: testVersion}}.Encode(nil, &fx.e))
	}
	f.Add([]byte(`{"event":{"module":"egress","action":"deny"},"egress":{"monitor":[],"exception":null}}`))
	f.Add([]byte(`{"@timestamp":"9999-12-31T23:59:59-01:00","event":{"module":"egress","action":"x"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseECS(line)
		if err != nil {
			return
		}
		again := ecsEncoder{EncoderOptions{Version: testVersion}}.Encode(nil, e)
		e2, err := ParseECS(again)
		if err != nil {
			t.Fatalf("re-encoded event does not parse: %v\n%s", err, again)
		}
		want := sanitizedECS(e)
		if len(want.Monitor) == 0 {
			want.Monitor = nil
		}
		if e.Time.IsZero() {
			e2.Time = time.Time{}
		}
		if !e2.Time.Equal(want.Time) {
			t.Fatalf("time %v, want %v", e2.Time, want.Time)
		}
		e2.Time, want.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(e2, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", e2, want)
		}
	})
}
