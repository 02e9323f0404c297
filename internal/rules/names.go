package rules

import (
	"net/netip"

	"github.com/egress-proxy/egress/internal/hostname"
)

// Names is every name the proxy saw for one tunnel or request (SPEC §5.2:
// every name counts).
type Names struct {
	Source netip.Addr
	// Target is the CONNECT host or absolute-URI host as sent; "" on the
	// transparent listeners, which have no outer name.
	Target string
	// Inner is the SNI (TLS) or the Host header (plain HTTP) as sent.
	Inner    string
	HasInner bool
	// TLS says Inner is an SNI (missing_sni and ech apply), not a Host header.
	TLS  bool
	ECH  bool // the ClientHello carried encrypted_client_hello
	Port uint16
	// User and Groups are the client's identity on the explicit proxy
	// (SPEC §10.2); "" and nil when unidentified.
	User   string
	Groups []string
}

// DecideTarget decides the outer name alone: what a CONNECT or an absolute-URI
// request is decided on before anything else is known.
func (c *Config) DecideTarget(src netip.Addr, target string, port uint16) Decision {
	return c.DecideOuter(src, target, port).Decision
}

// Outer is a connection's outer name (the CONNECT host or absolute-URI host),
// normalised once, with its decision. DecideInner takes it instead of
// deciding the name again.
type Outer struct {
	Raw      string     // as sent
	Name     string     // normalised ("" for an IP literal or an invalid name)
	IP       netip.Addr // an IP literal
	Decision Decision
}

// DecideOuter normalises and decides the outer name. A name that is not a
// hostname is denied with ReasonInvalidHost, after the segment check.
func (c *Config) DecideOuter(src netip.Addr, target string, port uint16) Outer {
	return c.DecideOuterAs(src, "", nil, target, port)
}

// DecideOuterAs is DecideOuter for an identified client.
func (c *Config) DecideOuterAs(src netip.Addr, user string, groups []string, target string, port uint16) Outer {
	o := Outer{Raw: target}
	seg, ok := c.Policy.SegmentFor(src)
	if !ok {
		o.Decision = Decision{Action: Deny, Reason: ReasonUnknownSource}
		return o
	}
	name, ip, err := hostname.Normalize(target)
	if err != nil {
		o.Decision = Decision{Action: Deny, Reason: ReasonInvalidHost, Segment: seg}
		return o
	}
	o.Name, o.IP = name, ip
	o.Decision = c.Policy.Decide(Request{Source: src, Host: name, IP: ip, Port: port, User: user, Groups: groups})
	return o
}

// DecideAll decides every name of a connection: the target (if any), then the
// tls block's checks (ech, missing_sni, sni_mismatch — one knob for SNI and
// Host header alike), then the inner name. Either name denied means denied.
func (c *Config) DecideAll(n Names) Decision {
	if n.Target == "" {
		return c.DecideInner(nil, n)
	}
	o := c.DecideOuterAs(n.Source, n.User, n.Groups, n.Target, n.Port)
	return c.DecideInner(&o, n)
}

// DecideAs is DecideAll as the explicit proxy applies it to a client that
// may be unidentified (n.User ""): a segment that requires an identity
// answers ReasonAuthRequired; so does a deny that an identity rule might
// have lifted (Decision.IdentityWanted). What the proxy answers 407 to, egress check and test blocks see
// as a deny with reason auth_required.
func (c *Config) DecideAs(n Names) Decision {
	d := c.DecideAll(n)
	if n.User == "" && d.Segment != nil && (d.Segment.RequireAuth || d.Action == Deny && d.IdentityWanted) && c.CanAuthenticate() {
		return Decision{Action: Deny, Reason: ReasonAuthRequired, Segment: d.Segment}
	}
	return d
}

// DecideInner finishes DecideAll for a connection whose outer name (n.Target)
// was decided by DecideOuter under this same config (o; nil when there is no
// target): the tls checks, then the inner name.
func (c *Config) DecideInner(o *Outer, n Names) Decision {
	p := c.Policy
	seg, ok := p.SegmentFor(n.Source)
	if !ok {
		return Decision{Action: Deny, Reason: ReasonUnknownSource}
	}
	var outer Decision
	var targetName string
	var targetIP netip.Addr
	if o != nil {
		if o.Decision.Action == Deny {
			return o.Decision
		}
		outer, targetName, targetIP = o.Decision, o.Name, o.IP
	}
	if n.TLS && n.ECH && c.TLS.ECH == Deny {
		return Decision{Action: Deny, Reason: ReasonECH, Segment: seg, Monitor: outer.Monitor}
	}
	if !n.HasInner {
		switch {
		case o == nil && n.TLS:
			return Decision{Action: Deny, Reason: ReasonMissingSNI, Segment: seg}
		case o == nil:
			return Decision{Action: Deny, Reason: ReasonInvalidHost, Segment: seg}
		case n.TLS && c.TLS.MissingSNI == Deny:
			return Decision{Action: Deny, Reason: ReasonMissingSNI, Segment: seg, Monitor: outer.Monitor}
		}
		return outer
	}
	innerName, innerIP, err := hostname.Normalize(n.Inner)
	if err != nil {
		return Decision{Action: Deny, Reason: ReasonInvalidHost, Segment: seg, Monitor: outer.Monitor}
	}
	if o != nil {
		// An IP-literal CONNECT with an SNI name is not a mismatch (SPEC §8):
		// the SNI is decided by name and the IP through cidrs rules.
		mismatch := targetName != "" && innerName != targetName ||
			targetIP.IsValid() && innerIP.IsValid() && innerIP != targetIP ||
			targetName != "" && innerIP.IsValid()
		if mismatch && c.TLS.SNIMismatch == Deny {
			return Decision{Action: Deny, Reason: ReasonSNIMismatch, Segment: seg, Monitor: outer.Monitor}
		}
	}
	ip := innerIP
	if targetIP.IsValid() {
		ip = targetIP
	}
	inner := p.Decide(Request{Source: n.Source, Host: innerName, IP: ip, Port: n.Port, User: n.User, Groups: n.Groups})
	if len(outer.Monitor) > 0 && innerName != targetName {
		inner.Monitor = mergeMonitor(outer.Monitor, inner.Monitor)
	}
	return inner
}

func mergeMonitor(a, b []*Rule) []*Rule {
	out := append([]*Rule(nil), a...)
	for _, r := range b {
		dup := false
		for _, o := range a {
			if o == r {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	return out
}

// NormalizeRequest builds the Request for one raw name (hostname or IP literal).
func NormalizeRequest(src netip.Addr, raw string, port uint16) (Request, error) {
	name, ip, err := hostname.Normalize(raw)
	if err != nil {
		return Request{}, err
	}
	return Request{Source: src, Host: name, IP: ip, Port: port}, nil
}
