package audit

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CEF header severities (0-10): a policy allow is low, a deny medium.
const (
	cefSeverityAllow = "3"
	cefSeverityDeny  = "5"
	cefSeverityOther = "4"
)

// Lengths of the ArcSight CEF extension dictionary (Implementing ArcSight CEF,
// rev. 25), in characters: a longer value is cut by ArcSight's parsers, so egress
// cuts it first, at a character boundary, where it chooses.
const (
	cefLenHeaderVersion = 31
	cefLenHeaderSigID   = 1023
	cefLenHeaderName    = 512
	cefLenAct           = 63   // act, outcome
	cefLenHost          = 1023 // dhost, reason, requestMethod
	cefLenDvchost       = 100
	cefLenRequest       = 1023
	cefLenMsg           = 1023
	cefLenCS            = 4000 // cs1..cs6
)

// CEF vendor extension keys, in the dictionary's VendornameProductnameKeyName
// form (vendor "egress", product "egress"); the table is in docs/siem.md.
const (
	cefKeyListener         = "EgressEgressListener"
	cefKeyConfigVersion    = "EgressEgressConfigVersion"
	cefKeyExceptionOwner   = "EgressEgressExceptionOwner"
	cefKeyExceptionTicket  = "EgressEgressExceptionTicket"
	cefKeyExceptionExpires = "EgressEgressExceptionExpires"
	cefKeyMonitor          = "EgressEgressMonitor"
	cefKeyUserGroups       = "EgressUserGroupName"    // user.group.name, comma-separated
	cefKeyAuthMethod       = "EgressEgressAuthMethod" // egress.auth.method
)

// cefEncoder writes ArcSight CEF:0 records:
//
//	CEF:0|egress|egress|<version>|<reason>|<action> <destination>|<severity>|<extension>
//
// The extension uses the dictionary's keys where one exists (rt act outcome reason
// src spt dst dpt dhost dvchost requestMethod request in out msg), labelled custom
// fields for the rest (cs1..cs6, cn1..cn3) and vendor keys for what CEF has no slot
// for; see docs/siem.md for the table.
type cefEncoder struct{ EncoderOptions }

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

// strMax is str with the value cut to max characters.
func (x *cefExt) strMax(k, v string, max int) {
	x.str(k, clipRunes(v, max))
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
		x.strMax(slot, v, cefLenCS)
	}
}

func (enc cefEncoder) Encode(dst []byte, e *Event) []byte {
	b := append(dst, "CEF:0|egress|egress|"...)
	b = appendCEF(b, clipRunes(enc.Version, cefLenHeaderVersion), false)
	b = append(b, '|')
	if e.Reason != "" {
		b = appendCEF(b, clipRunes(e.Reason, cefLenHeaderSigID), false)
	} else {
		b = append(b, "decision"...)
	}
	b = append(b, '|')
	b = appendCEF(b, clipRunes(cefName(e), cefLenHeaderName), false)
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
	x.strMax("act", e.Action, cefLenAct)
	x.strMax("outcome", e.outcome(), cefLenAct)
	x.strMax("reason", e.Reason, cefLenHost)
	x.str("src", e.SourceIP)
	if e.SourcePort != 0 {
		x.num("spt", int64(e.SourcePort))
	}
	x.str("dst", e.DestIP)
	if e.DestPort != 0 {
		x.num("dpt", int64(e.DestPort))
	}
	x.strMax("dhost", e.DestDomain, cefLenHost)
	x.strMax("dvchost", enc.Hostname, cefLenDvchost)
	x.strMax("requestMethod", e.Method, cefLenHost)
	if e.URLDomain != "" || e.URLPath != "" {
		x.str("request", clipURL(cefRequestURL(e), cefLenRequest))
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
	x.strMax("suser", e.User, cefLenHost)
	x.strMax("sntdom", e.UserDomain, cefLenHost)
	x.strMax("msg", e.Error, cefLenMsg)
	enc.vendorKeys(&x, e, cefKeyListener, cefKeyConfigVersion, cefKeyExceptionOwner, cefKeyExceptionTicket,
		cefKeyExceptionExpires, cefKeyMonitor)
	if len(e.UserGroups) > 0 {
		x.str(cefKeyUserGroups, strings.Join(e.UserGroups[:min(len(e.UserGroups), MaxGroups)], ","))
	}
	x.str(cefKeyAuthMethod, e.AuthMethod)
	if enc.LegacyFields { // egress 1.x names: log.legacy_fields only
		enc.vendorKeys(&x, e, "egressListener", "egressConfigVersion", "egressExceptionOwner", "egressExceptionTicket",
			"egressExceptionExpires", "egressMonitor")
	}
	return x.b
}

// vendorKeys writes the fields CEF has no dictionary key for, under the names given.
func (enc cefEncoder) vendorKeys(x *cefExt, e *Event, listener, version, owner, ticket, expires, monitor string) {
	x.str(listener, e.Listener)
	x.str(version, e.ConfigVersion)
	if ex := e.Exception; ex != nil {
		x.str(owner, ex.Owner)
		x.str(ticket, ex.Ticket)
		x.str(expires, ex.Expires)
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
		x.key(monitor)
		x.b = escapeCEF(x.b, string(g.b), true)
	}
}

// cefName is the header's Name: "<action> <destination>[:port]", the destination
// being the domain, else the SNI, else the URL host, else the address the client
// sent the connection to. A connection with none of them (a transparent
// connection refused before its original destination was known) says why:
// "<action> without destination (<reason>)".
func cefName(e *Event) string {
	action := e.Action
	if action == "" {
		action = "decision"
	}
	host := ""
	for _, s := range [...]string{e.DestDomain, e.SNI, e.URLDomain, e.DestIP} {
		if s != "" {
			host = s
			break
		}
	}
	switch {
	case host != "" && e.DestPort > 0:
		return action + " " + net.JoinHostPort(host, strconv.Itoa(e.DestPort))
	case host != "":
		return action + " " + host
	case e.DestPort > 0 && e.Reason != "":
		return action + " port " + strconv.Itoa(e.DestPort) + " without destination (" + e.Reason + ")"
	case e.Reason != "":
		return action + " without destination (" + e.Reason + ")"
	}
	return action
}

// cefRequestURL is the request as an absolute URL: scheme, host, port and the
// path percent-encoded again (url.path holds it decoded), so that the value is a
// URL again. The query is never logged.
func cefRequestURL(e *Event) string {
	host := e.URLDomain
	if host == "" {
		host = e.DestDomain
	}
	if e.DestPort > 0 {
		host = net.JoinHostPort(host, strconv.Itoa(e.DestPort))
	}
	// Cut first (MaxFieldLen, like every field), so that escaping a hostile
	// 64 KiB path cannot allocate three times that per event.
	u := url.URL{Scheme: "http", Host: clip(host), Path: clip(e.URLPath)}
	if u.Path != "" && u.Path[0] != '/' {
		u.Path = "/" + u.Path
	}
	return u.String()
}

// clipURL cuts an ASCII URL to max characters without splitting a %XX escape.
func clipURL(u string, max int) string {
	if len(u) <= max {
		return u
	}
	u = u[:max]
	if i := strings.LastIndexByte(u, '%'); i >= 0 && i >= len(u)-2 {
		u = u[:i]
	}
	return u
}

// clipRunes cuts s to at most max characters (each invalid UTF-8 byte counting
// as one, as it becomes one U+FFFD).
func clipRunes(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := 0
	for i := 0; i < len(s); {
		if n == max {
			return s[:i]
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return s
}
