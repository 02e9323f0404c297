package audit

import "math"

// JSON types of ECSField.JSON.
const (
	JSONString  = "string"
	JSONInteger = "integer"
	JSONBoolean = "boolean"
)

// ECSField is one leaf field of the ECS encoding: what the "ecs" encoder
// writes, what ParseECS reads back, and what replay's fast decoder reads.
type ECSField struct {
	// Name is the flat dotted name; a member of an array of objects is
	// written "parent[].member" (egress.monitor[].rule).
	Name string
	// JSON is the JSON type of the value: JSONString, JSONInteger or
	// JSONBoolean (of each element when Array).
	JSON string
	// Array: the value is a JSON array (ECS "normalize: array").
	Array bool
	// Event is the Event field the value carries, as a Go selector from
	// Event ("SourcePort", "Exception.Owner", "Monitor.Rule"); "" for a value
	// the encoder derives or writes as a constant (ecs.version, event.kind,
	// event.outcome, observer.*), which decoders do not read back.
	Event string
	// Max is the largest value ParseECS accepts for a JSONInteger (the
	// smallest is 0).
	Max int64
	// Legacy: the egress 1.x name of a field that moved, written only with
	// log.legacy_fields and not an ECS field; decoders read it when the
	// line does not carry the current name.
	Legacy bool
}

// ECSFields is every field egress writes in ECS, in encoding order: the one
// list of the schema. The encoder (ecsEncoder.Encode), the decoder (ecsDoc,
// ParseECS) and replay's fast decoder are written by hand for speed and are
// tested against it (TestECSFieldList here, TestFastParseFieldList in
// internal/replay), as is testdata/ecs-8.11-fields.txt, the ECS definitions
// of the fields not under egress.*. docs/siem.md documents the same fields.
var ECSFields = []ECSField{
	{Name: "@timestamp", JSON: JSONString, Event: "Time"},
	{Name: "ecs.version", JSON: JSONString},
	{Name: "event.kind", JSON: JSONString},
	{Name: "event.category", JSON: JSONString, Array: true},
	{Name: "event.type", JSON: JSONString, Array: true},
	{Name: "event.module", JSON: JSONString},
	{Name: "event.outcome", JSON: JSONString},
	{Name: "event.id", JSON: JSONString, Event: "ID"},
	{Name: "event.action", JSON: JSONString, Event: "Action"},
	{Name: "event.reason", JSON: JSONString, Event: "Reason"},
	{Name: "event.duration", JSON: JSONInteger, Event: "Duration", Max: math.MaxInt64},
	{Name: "rule.name", JSON: JSONString, Event: "Rule"},
	{Name: "rule.ruleset", JSON: JSONString, Event: "Ruleset"},
	{Name: "egress.config_version", JSON: JSONString, Event: "ConfigVersion"},
	{Name: "egress.exception.owner", JSON: JSONString, Event: "Exception.Owner"},
	{Name: "egress.exception.ticket", JSON: JSONString, Event: "Exception.Ticket"},
	{Name: "egress.exception.expires", JSON: JSONString, Event: "Exception.Expires"},
	{Name: "egress.segment", JSON: JSONString, Event: "Segment"},
	{Name: "egress.listener", JSON: JSONString, Event: "Listener"},
	{Name: "egress.monitor[].rule", JSON: JSONString, Event: "Monitor.Rule"},
	{Name: "egress.monitor[].ruleset", JSON: JSONString, Event: "Monitor.Ruleset"},
	{Name: "egress.monitor[].action", JSON: JSONString, Event: "Monitor.Action"},
	{Name: "egress.tls.ja4", JSON: JSONString, Event: "JA4"},
	{Name: "egress.tls.ech", JSON: JSONBoolean, Event: "ECH"},
	{Name: "egress.auth.method", JSON: JSONString, Event: "AuthMethod"},
	{Name: "source.ip", JSON: JSONString, Event: "SourceIP"},
	{Name: "source.port", JSON: JSONInteger, Event: "SourcePort", Max: 65535},
	{Name: "source.bytes", JSON: JSONInteger, Event: "SourceBytes", Max: math.MaxInt64},
	{Name: "destination.domain", JSON: JSONString, Event: "DestDomain"},
	{Name: "destination.ip", JSON: JSONString, Event: "DestIP"},
	{Name: "destination.port", JSON: JSONInteger, Event: "DestPort", Max: 65535},
	{Name: "destination.bytes", JSON: JSONInteger, Event: "DestBytes", Max: math.MaxInt64},
	{Name: "user.name", JSON: JSONString, Event: "User"},
	{Name: "user.domain", JSON: JSONString, Event: "UserDomain"},
	{Name: "user.group.name", JSON: JSONString, Array: true, Event: "UserGroups"},
	{Name: "tls.client.server_name", JSON: JSONString, Event: "SNI"},
	{Name: "tls.client.ja4", JSON: JSONString, Event: "JA4", Legacy: true},
	{Name: "tls.client.ech", JSON: JSONBoolean, Event: "ECH", Legacy: true},
	{Name: "http.request.method", JSON: JSONString, Event: "Method"},
	{Name: "http.response.status_code", JSON: JSONInteger, Event: "Status", Max: 999},
	{Name: "url.domain", JSON: JSONString, Event: "URLDomain"},
	{Name: "url.path", JSON: JSONString, Event: "URLPath"},
	{Name: "error.message", JSON: JSONString, Event: "Error"},
	{Name: "observer.product", JSON: JSONString},
	{Name: "observer.vendor", JSON: JSONString},
	{Name: "observer.type", JSON: JSONString},
	{Name: "observer.version", JSON: JSONString},
	{Name: "observer.hostname", JSON: JSONString},
}
