package rules

import (
	"net/netip"
	"time"
)

// Action is allow or deny.
type Action uint8

const (
	// Deny is the zero value: a Decision that nothing filled in denies.
	Deny Action = iota
	Allow
)

func (a Action) String() string {
	if a == Allow {
		return "allow"
	}
	return "deny"
}

// parseAction accepts exactly "allow" and "deny".
func parseAction(s string) (Action, bool) {
	switch s {
	case "allow":
		return Allow, true
	case "deny":
		return Deny, true
	}
	return Deny, false
}

// Reason says why a decision was made. The constants are the very strings used
// in metric labels and SIEM events (SPEC §6), so they never change.
type Reason string

const (
	// Policy outcomes, set by Decide.
	ReasonRule          Reason = "rule"           // a rule matched and decided
	ReasonDefault       Reason = "default"        // no rule matched: the segment default
	ReasonUnknownSource Reason = "unknown_source" // the client is in no segment
	ReasonInvalidHost   Reason = "invalid_host"   // a name that is not a hostname (SPEC §2.2)

	// Protocol outcomes, set by the listeners from the tls block's settings.
	ReasonSNIMismatch        Reason = "sni_mismatch"            // CONNECT/URL host and SNI/Host differ
	ReasonMissingSNI         Reason = "missing_sni"             // ClientHello without SNI
	ReasonNonTLS             Reason = "non_tls"                 // tunnel bytes are not TLS
	ReasonMalformedHello     Reason = "malformed_client_hello"  // ClientHello rejected by the parser
	ReasonHelloTimeout       Reason = "hello_timeout"           // ClientHello not complete in time
	ReasonECH                Reason = "ech"                     // encrypted_client_hello offered, tls.ech = deny
	ReasonPrivateDestination Reason = "private_destination"     // resolves to a refused address range
	ReasonDNSError           Reason = "dns_error"               // the name did not resolve
	ReasonUpstreamError      Reason = "destination_unavailable" // the dial failed
	ReasonLimit              Reason = "connection_limit"        // max_connections or per_source reached
	ReasonReload             Reason = "config_reload"           // an open tunnel denied by a newer config
	ReasonUndecided          Reason = "undecided"               // a path that ended without deciding: a bug, recorded as a deny
	ReasonShutdown           Reason = "shutdown"                // closed by a shutdown before it was decided (a pending ClientHello)
	ReasonInvalidRequest     Reason = "invalid_request"         // an HTTP request the proxy refuses to forward (a body on GET/HEAD/TRACE)

	// Identity outcomes, set by the explicit proxy (SPEC §10.2).
	ReasonAuthRequired    Reason = "auth_required"    // 407: the segment (or a rule) needs an identity and none was given
	ReasonAuthFailed      Reason = "auth_failed"      // 407: credentials given and wrong (or malformed, or rate-limited)
	ReasonAuthUnavailable Reason = "auth_unavailable" // 503: the identity source (LDAP, KDC) could not check them: fail closed
)

// Request is what Decide needs to know about one destination. Host must be
// normalised (hostname.Normalize) or empty; IP is set only when the client named
// the destination by an IP literal.
type Request struct {
	Source netip.Addr
	Host   string
	IP     netip.Addr
	Port   uint16
	// User and Groups are the client's identity ("" and nil: unidentified).
	// A rule with users or groups never matches an unidentified request.
	User   string
	Groups []string
}

// Decision is the outcome of Decide. Rule is nil when the default or a protocol
// check decided. Monitor lists the monitor rules that matched before the
// decision (their would-be actions), in evaluation order.
type Decision struct {
	Action  Action
	Reason  Reason
	Segment *Segment
	Rule    *Rule
	Monitor []*Rule
	// IdentityWanted: the client was unidentified, and an allow rule that
	// matches users or groups matched everything else before the decision:
	// identified, it might be allowed. The explicit proxy answers such a
	// deny with 407 (DecideAs: auth_required).
	IdentityWanted bool
}

// SegmentName is the deciding segment's name, or "" for unknown sources.
func (d *Decision) SegmentName() string {
	if d.Segment == nil {
		return ""
	}
	return d.Segment.Name
}

// RuleName is the deciding rule's name, or "".
func (d *Decision) RuleName() string {
	if d.Rule == nil {
		return ""
	}
	return d.Rule.Name
}

// Ruleset is the deciding rule's ruleset (policy or segment name), or "".
func (d *Decision) Ruleset() string {
	if d.Rule == nil {
		return ""
	}
	return d.Rule.Ruleset
}

// Segment is a compiled segment.
type Segment struct {
	Name    string
	Default Action
	Sources []netip.Prefix
	// RequireAuth: an unidentified client gets 407 until it identifies.
	RequireAuth bool
	// IdentityRules: some rule of the segment matches users or groups (an
	// unidentified client denied where one of them would apply is asked to
	// identify: Decision.IdentityWanted).
	IdentityRules bool
	rules         []*Rule // own rules, then each policy's, in evaluation order
}

// WantsIdentity reports whether an unidentified client may be asked for
// credentials on this segment.
func (s *Segment) WantsIdentity() bool { return s != nil && (s.RequireAuth || s.IdentityRules) }

// Rules returns the segment's rules in evaluation order.
func (s *Segment) Rules() []*Rule { return s.rules }

// Rule is a compiled rule. It is shared between every segment that uses its
// policy, and never changes after compilation.
type Rule struct {
	Name        string
	Ruleset     string // policy or segment name
	RulesetKind string // "policy" or "segment"
	Action      Action
	Monitor     bool
	Description string
	Owner       string
	Ticket      string
	Expires     time.Time // zero: never; from this instant on the rule does not match
	ExpiresText string    // as written in the config

	domainSets []uint32 // sorted ids of the domain sets (categories, inline lists)
	hasDomains bool
	cidrs      []netip.Prefix
	ports      []uint16
	users      []string // sorted
	groups     []string // sorted
	Pos        string   // file:line:col of the rule block, for traces
}

// HasException reports whether the rule documents an exception.
func (r *Rule) HasException() bool {
	return r.Owner != "" || r.Ticket != "" || r.ExpiresText != ""
}

// Users returns the rule's users matcher (sorted; nil when none).
func (r *Rule) Users() []string { return r.users }

// Groups returns the rule's groups matcher (sorted; nil when none).
func (r *Rule) Groups() []string { return r.groups }

// NeedsIdentity reports whether the rule matches on users or groups.
func (r *Rule) NeedsIdentity() bool { return len(r.users) > 0 || len(r.groups) > 0 }
