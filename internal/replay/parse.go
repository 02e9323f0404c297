package replay

import "github.com/egress-proxy/egress/internal/audit"

// ParseEvent decodes one ECS line the way replay does (the fast path for
// the plain lines egress writes, audit.ParseECS otherwise), for the other
// readers of recorded events (internal/report).
func ParseEvent(line []byte) (*audit.Event, error) { return parseEvent(line) }
