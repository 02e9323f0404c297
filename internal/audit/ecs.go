package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Encoder appends one encoded event to dst, without a trailing newline.
// Implementations are safe for concurrent use.
type Encoder interface {
	Encode(dst []byte, e *Event) []byte
}

// EncoderOptions configure an encoder.
type EncoderOptions struct {
	Format   string // "ecs" or "cef"
	Version  string // product version: observer.version (ECS), the CEF header
	Hostname string // the writing host: observer.hostname (ECS), dvchost (CEF); "" = omitted
	// LegacyFields also writes the field names of egress 1.x that this release
	// renamed (ECS tls.client.ja4/ech, CEF egressListener etc.), next to the new
	// ones. For one release only, while saved searches move to the new names.
	LegacyFields bool
}

// NewEncoder returns the encoder of format ("ecs" or "cef"); version is the
// product version written in observer.version (ECS) or the CEF header.
func NewEncoder(format string, version string) (Encoder, error) {
	return NewEncoderWith(EncoderOptions{Format: format, Version: version})
}

// NewEncoderWith returns the encoder o describes.
func NewEncoderWith(o EncoderOptions) (Encoder, error) {
	switch Format(o.Format) {
	case FormatECS:
		return ecsEncoder{o}, nil
	case FormatCEF:
		return cefEncoder{o}, nil
	}
	return nil, fmt.Errorf("%w %q: want %q or %q", ErrFormat, o.Format, FormatECS, FormatCEF)
}

var (
	_ Encoder = ecsEncoder{}
	_ Encoder = cefEncoder{}
)

// eventTime is the event's time, or now when unset.
func eventTime(e *Event) time.Time {
	if e.Time.IsZero() {
		return time.Now()
	}
	return e.Time
}

// jsonObj writes the members of one JSON object, skipping empty values.
type jsonObj struct {
	b []byte
	n int // members written
}

func (o *jsonObj) key(k string) {
	if o.n > 0 {
		o.b = append(o.b, ',')
	}
	o.n++
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObj) str(k, v string) {
	if v != "" {
		o.key(k)
		o.b = appendJSONString(o.b, v)
	}
}

func (o *jsonObj) num(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// open starts a nested object member; close ends it.
func (o *jsonObj) open(k string) jsonObj {
	o.key(k)
	return jsonObj{b: append(o.b, '{')}
}

func (o *jsonObj) close(inner jsonObj) {
	o.b = append(inner.b, '}')
}

// ecsEncoder writes Elastic Common Schema JSON, nested objects, fixed key order.
// Every field is an ECS 8.11 field with the type ECS gives it, or lives under
// egress.* (ECS's guidance for custom fields; TestECSConformance checks both).
type ecsEncoder struct{ EncoderOptions }

func (enc ecsEncoder) Encode(dst []byte, e *Event) []byte {
	o := jsonObj{b: append(dst, '{')}
	o.key("@timestamp")
	o.b = append(o.b, '"')
	o.b = eventTime(e).UTC().AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
	o.key("ecs")
	o.b = append(o.b, `{"version":"`+ECSVersion+`"}`...)

	ev := o.open("event")
	ev.key("kind")
	ev.b = append(ev.b, `"event","category":["network"],"type":["connection"`...)
	switch e.Action {
	case ActionAllow:
		ev.b = append(ev.b, `,"allowed"`...)
	case ActionDeny:
		ev.b = append(ev.b, `,"denied"`...)
	}
	// A failure is event.outcome "failure" with error.*: "error" is not an
	// expected event.type of the network category.
	ev.b = append(ev.b, `],"module":"egress"`...)
	ev.n += 3
	ev.str("outcome", e.outcome())
	ev.str("id", e.ID)
	ev.str("action", e.Action)
	ev.str("reason", e.Reason)
	if e.Duration > 0 {
		ev.num("duration", int64(e.Duration))
	}
	o.close(ev)

	if e.Rule != "" || e.Ruleset != "" {
		r := o.open("rule")
		r.str("name", e.Rule)
		r.str("ruleset", e.Ruleset)
		o.close(r)
	}

	if e.ConfigVersion != "" || e.Exception != nil || e.Segment != "" || e.Listener != "" || len(e.Monitor) > 0 ||
		e.JA4 != "" || e.ECH != nil || e.AuthMethod != "" {
		g := o.open("egress")
		g.str("config_version", e.ConfigVersion)
		if x := e.Exception; x != nil {
			xo := g.open("exception")
			xo.str("owner", x.Owner)
			xo.str("ticket", x.Ticket)
			xo.str("expires", x.Expires)
			g.close(xo)
		}
		g.str("segment", e.Segment)
		g.str("listener", e.Listener)
		if len(e.Monitor) > 0 {
			g.key("monitor")
			g.b = append(g.b, '[')
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
		}
		if e.JA4 != "" || e.ECH != nil {
			t := g.open("tls")
			t.str("ja4", e.JA4)
			if e.ECH != nil {
				t.key("ech")
				t.b = strconv.AppendBool(t.b, *e.ECH)
			}
			g.close(t)
		}
		if e.AuthMethod != "" {
			a := g.open("auth")
			a.str("method", e.AuthMethod)
			g.close(a)
		}
		o.close(g)
	}

	bytes := e.hasBytes()
	if e.SourceIP != "" || e.SourcePort != 0 || bytes {
		s := o.open("source")
		s.str("ip", e.SourceIP)
		if e.SourcePort != 0 {
			s.num("port", int64(e.SourcePort))
		}
		if bytes {
			s.num("bytes", e.SourceBytes)
		}
		o.close(s)
	}
	if e.DestDomain != "" || e.DestIP != "" || e.DestPort != 0 || bytes {
		d := o.open("destination")
		d.str("domain", e.DestDomain)
		d.str("ip", e.DestIP)
		if e.DestPort != 0 {
			d.num("port", int64(e.DestPort))
		}
		if bytes {
			d.num("bytes", e.DestBytes)
		}
		o.close(d)
	}

	if e.User != "" || e.UserDomain != "" || len(e.UserGroups) > 0 {
		u := o.open("user")
		u.str("name", e.User)
		u.str("domain", e.UserDomain)
		if len(e.UserGroups) > 0 {
			g := u.open("group")
			g.key("name")
			g.b = append(g.b, '[')
			for i, s := range e.UserGroups[:min(len(e.UserGroups), MaxGroups)] {
				if i > 0 {
					g.b = append(g.b, ',')
				}
				g.b = appendJSONString(g.b, s)
			}
			g.b = append(g.b, ']')
			u.close(g)
		}
		o.close(u)
	}

	legacy := enc.LegacyFields && (e.JA4 != "" || e.ECH != nil)
	if e.SNI != "" || legacy {
		t := o.open("tls")
		c := t.open("client")
		c.str("server_name", e.SNI)
		if legacy { // egress 1.x names, not ECS: log.legacy_fields only
			c.str("ja4", e.JA4)
			if e.ECH != nil {
				c.key("ech")
				c.b = strconv.AppendBool(c.b, *e.ECH)
			}
		}
		t.close(c)
		o.close(t)
	}

	if e.Method != "" || e.Status != 0 {
		h := o.open("http")
		if e.Method != "" {
			rq := h.open("request")
			rq.str("method", e.Method)
			h.close(rq)
		}
		if e.Status != 0 {
			rs := h.open("response")
			rs.num("status_code", int64(e.Status))
			h.close(rs)
		}
		o.close(h)
	}

	if e.URLDomain != "" || e.URLPath != "" {
		u := o.open("url")
		u.str("domain", e.URLDomain)
		u.str("path", e.URLPath)
		o.close(u)
	}

	if e.Error != "" {
		er := o.open("error")
		er.str("message", e.Error)
		o.close(er)
	}

	ob := o.open("observer")
	ob.b = append(ob.b, `"product":"egress","vendor":"egress","type":"proxy"`...)
	ob.n = 3
	ob.str("version", enc.Version)
	ob.str("hostname", enc.Hostname)
	o.close(ob)
	return append(o.b, '}')
}

// ecsDoc is the subset of an ECS event that ParseECS reads back.
type ecsDoc struct {
	Timestamp string `json:"@timestamp"`
	Event     struct {
		ID       string `json:"id"`
		Action   string `json:"action"`
		Reason   string `json:"reason"`
		Module   string `json:"module"`
		Duration int64  `json:"duration"`
	} `json:"event"`
	Rule struct {
		Name    string `json:"name"`
		Ruleset string `json:"ruleset"`
	} `json:"rule"`
	Egress struct {
		ConfigVersion string       `json:"config_version"`
		Exception     *Exception   `json:"exception"`
		Segment       string       `json:"segment"`
		Listener      string       `json:"listener"`
		Monitor       []MonitorHit `json:"monitor"`
		TLS           struct {
			JA4 string `json:"ja4"`
			ECH *bool  `json:"ech"`
		} `json:"tls"`
		Auth struct {
			Method string `json:"method"`
		} `json:"auth"`
	} `json:"egress"`
	User struct {
		Name   string `json:"name"`
		Domain string `json:"domain"`
		Group  struct {
			Name []string `json:"name"`
		} `json:"group"`
	} `json:"user"`
	Source struct {
		IP    string `json:"ip"`
		Port  int    `json:"port"`
		Bytes int64  `json:"bytes"`
	} `json:"source"`
	Destination struct {
		Domain string `json:"domain"`
		IP     string `json:"ip"`
		Port   int    `json:"port"`
		Bytes  int64  `json:"bytes"`
	} `json:"destination"`
	TLS struct {
		Client struct {
			ServerName string `json:"server_name"`
			JA4        string `json:"ja4"` // egress 1.x name, read for old archives
			ECH        *bool  `json:"ech"` // egress 1.x name, read for old archives
		} `json:"client"`
	} `json:"tls"`
	HTTP struct {
		Request struct {
			Method string `json:"method"`
		} `json:"request"`
		Response struct {
			StatusCode int `json:"status_code"`
		} `json:"response"`
	} `json:"http"`
	URL struct {
		Domain string `json:"domain"`
		Path   string `json:"path"`
	} `json:"url"`
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
	Observer struct {
		Product string `json:"product"`
	} `json:"observer"`
}

// ParseECS decodes one ECS line written by the "ecs" encoder back into an Event
// (for `egress replay`). The line must be one JSON object from egress
// (event.module or observer.product "egress") with event.action set; unknown
// members are ignored, so events enriched by a shipper still parse. The JA4 and
// ECH flag are read from egress.tls.*, or from tls.client.* (the names egress
// 1.x wrote) when a line has no egress.tls.
func ParseECS(line []byte) (*Event, error) {
	var d ecsDoc
	if err := json.Unmarshal(line, &d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotEvent, err)
	}
	if d.Event.Module != "egress" && d.Observer.Product != "egress" {
		return nil, fmt.Errorf("%w: neither event.module nor observer.product is \"egress\"", ErrNotEvent)
	}
	if d.Event.Action == "" {
		return nil, fmt.Errorf("%w: no event.action", ErrNotEvent)
	}
	for _, n := range [...]struct {
		name   string
		v, max int64
	}{
		{"source.port", int64(d.Source.Port), 65535},
		{"destination.port", int64(d.Destination.Port), 65535},
		{"http.response.status_code", int64(d.HTTP.Response.StatusCode), 999},
		{"source.bytes", d.Source.Bytes, math.MaxInt64},
		{"destination.bytes", d.Destination.Bytes, math.MaxInt64},
		{"event.duration", d.Event.Duration, math.MaxInt64},
	} {
		if n.v < 0 || n.v > n.max {
			return nil, fmt.Errorf("%w: %s %d out of range", ErrNotEvent, n.name, n.v)
		}
	}
	e := &Event{
		ID:            d.Event.ID,
		Action:        d.Event.Action,
		Reason:        d.Event.Reason,
		Rule:          d.Rule.Name,
		Ruleset:       d.Rule.Ruleset,
		ConfigVersion: d.Egress.ConfigVersion,
		Exception:     d.Egress.Exception,
		Segment:       d.Egress.Segment,
		Listener:      d.Egress.Listener,
		Monitor:       d.Egress.Monitor,
		SourceIP:      d.Source.IP,
		SourcePort:    d.Source.Port,
		DestDomain:    d.Destination.Domain,
		DestIP:        d.Destination.IP,
		DestPort:      d.Destination.Port,
		SNI:           d.TLS.Client.ServerName,
		JA4:           d.Egress.TLS.JA4,
		ECH:           d.Egress.TLS.ECH,
		Method:        d.HTTP.Request.Method,
		URLDomain:     d.URL.Domain,
		URLPath:       d.URL.Path,
		Status:        d.HTTP.Response.StatusCode,
		SourceBytes:   d.Source.Bytes,
		DestBytes:     d.Destination.Bytes,
		Duration:      time.Duration(d.Event.Duration),
		Error:         d.Error.Message,
		User:          d.User.Name,
		UserDomain:    d.User.Domain,
		UserGroups:    d.User.Group.Name,
		AuthMethod:    d.Egress.Auth.Method,
	}
	// Lines written before the fields moved to egress.tls.* (or with
	// log.legacy_fields) carry the old names.
	if e.JA4 == "" {
		e.JA4 = d.TLS.Client.JA4
	}
	if e.ECH == nil {
		e.ECH = d.TLS.Client.ECH
	}
	if d.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, d.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("%w: @timestamp: %w", ErrNotEvent, err)
		}
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("%w: @timestamp year %d out of range", ErrNotEvent, y)
		}
		e.Time = t
	}
	return e, nil
}
