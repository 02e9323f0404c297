package audit

import (
	"strconv"
)

// CEF header severities (0-10): a policy allow is low, a deny medium.
const (
	cefSeverityAllow = "3"
	cefSeverityDeny  = "5"
	cefSeverityOther = "4"
)

// cefEncoder writes ArcSight CEF:0 records:
//
//	CEF:0|egress|egress|<version>|<reason>|<action> <destination>|<severity>|<extension>
//
// The extension uses the standard keys where one exists (rt act outcome reason src
// spt dst dpt dhost requestMethod request in out msg), labelled custom fields for
// the rest (cs1..cs6, cn1..cn3) and egress-prefixed keys for what CEF has no slot
// for; see docs/siem.md for the table.
type cefEncoder struct{ version string }

// cefExt writes the key=value pairs of a CEF extension, skipping empty values.
type cefExt struct {
	b []byte
	n int
}

func (x *cefExt) key(k string) {
	if x.n > 0 {
		x.b = append(x.b, ' ')
	}
	x.n++
	x.b = append(x.b, k...)
	x.b = append(x.b, '=')
}

func (x *cefExt) str(k, v string) {
	if v != "" {
		x.key(k)
		x.b = appendCEF(x.b, v, true)
	}
}

func (x *cefExt) num(k string, v int64) {
	x.key(k)
	x.b = strconv.AppendInt(x.b, v, 10)
}

// labelled writes "<slotLabel>=<label> <slot>=<value>" when value is set.
func (x *cefExt) labelled(slot, slotLabel, label, v string) {
	if v != "" {
		x.key(slotLabel)
		x.b = append(x.b, label...)
		x.str(slot, v)
	}
}

func (enc cefEncoder) Encode(dst []byte, e *Event) []byte {
	b := append(dst, "CEF:0|egress|egress|"...)
	b = appendCEF(b, enc.version, false)
	b = append(b, '|')
	if e.Reason != "" {
		b = appendCEF(b, e.Reason, false)
	} else {
		b = append(b, "decision"...)
	}
	b = append(b, '|')
	if e.Action != "" {
		b = appendCEF(b, e.Action, false)
	} else {
		b = append(b, "decision"...)
	}
	if host := cefDestination(e); host != "" {
		b = append(b, ' ')
		b = appendCEFHostPort(b, host, e.DestPort)
	}
	b = append(b, '|')
	switch e.Action {
	case ActionAllow:
		b = append(b, cefSeverityAllow...)
	case ActionDeny:
		b = append(b, cefSeverityDeny...)
	default:
		b = append(b, cefSeverityOther...)
	}
	b = append(b, '|')

	x := cefExt{b: b}
	x.num("rt", eventTime(e).UnixMilli())
	x.str("act", e.Action)
	x.str("outcome", e.outcome())
	x.str("reason", e.Reason)
	x.str("src", e.SourceIP)
	if e.SourcePort != 0 {
		x.num("spt", int64(e.SourcePort))
	}
	x.str("dst", e.DestIP)
	if e.DestPort != 0 {
		x.num("dpt", int64(e.DestPort))
	}
	x.str("dhost", e.DestDomain)
	x.str("requestMethod", e.Method)
	if e.URLDomain != "" || e.URLPath != "" {
		x.key("request")
		x.b = append(x.b, "http://"...)
		x.b = appendCEF(x.b, e.URLDomain, true)
		x.b = appendCEF(x.b, e.URLPath, true)
	}
	if e.hasBytes() {
		x.num("in", e.SourceBytes)
		x.num("out", e.DestBytes)
	}
	x.labelled("cs1", "cs1Label", "segment", e.Segment)
	x.labelled("cs2", "cs2Label", "rule", e.Rule)
	x.labelled("cs3", "cs3Label", "sni", e.SNI)
	x.labelled("cs4", "cs4Label", "ruleset", e.Ruleset)
	x.labelled("cs5", "cs5Label", "eventId", e.ID)
	x.labelled("cs6", "cs6Label", "ja4", e.JA4)
	if e.Status != 0 {
		x.key("cn1Label")
		x.b = append(x.b, "status"...)
		x.num("cn1", int64(e.Status))
	}
	if e.Duration > 0 {
		x.key("cn2Label")
		x.b = append(x.b, "durationNs"...)
		x.num("cn2", int64(e.Duration))
	}
	if e.ECH != nil {
		x.key("cn3Label")
		x.b = append(x.b, "ech"...)
		v := int64(0)
		if *e.ECH {
			v = 1
		}
		x.num("cn3", v)
	}
	x.str("msg", e.Error)
	x.str("egressListener", e.Listener)
	x.str("egressConfigVersion", e.ConfigVersion)
	if ex := e.Exception; ex != nil {
		x.str("egressExceptionOwner", ex.Owner)
		x.str("egressExceptionTicket", ex.Ticket)
		x.str("egressExceptionExpires", ex.Expires)
	}
	if len(e.Monitor) > 0 {
		// The list as the same JSON array ECS carries, then CEF-escaped.
		g := jsonObj{b: []byte{'['}}
		for i := range e.Monitor {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			m := jsonObj{b: append(g.b, '{')}
			m.str("rule", e.Monitor[i].Rule)
			m.str("ruleset", e.Monitor[i].Ruleset)
			m.str("action", e.Monitor[i].Action)
			g.b = append(m.b, '}')
		}
		g.b = append(g.b, ']')
		x.key("egressMonitor")
		x.b = escapeCEF(x.b, string(g.b), true)
	}
	return x.b
}

// cefDestination is the name shown in the header: the destination domain, else the
// SNI, else the URL host, else the destination IP.
func cefDestination(e *Event) string {
	for _, s := range [...]string{e.DestDomain, e.SNI, e.URLDomain, e.DestIP} {
		if s != "" {
			return s
		}
	}
	return ""
}

// appendCEFHostPort appends host[:port] escaped as a header field, bracketing an
// IPv6 literal when a port follows.
func appendCEFHostPort(b []byte, host string, port int) []byte {
	if port <= 0 {
		return appendCEF(b, host, false)
	}
	v6 := false
	for i := 0; i < len(host); i++ {
		if host[i] == ':' {
			v6 = true
			break
		}
	}
	if v6 {
		b = append(b, '[')
	}
	b = appendCEF(b, host, false)
	if v6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return strconv.AppendInt(b, int64(port), 10)
}
