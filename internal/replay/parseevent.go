package replay

import "github.com/egress-proxy/egress/internal/audit"

// ParseEvent decodes one ECS line (without its newline) the way replay does:
// the fast path for the plain lines egress writes, audit.ParseECS for
// anything else. Other readers of recorded events (egress discover) use it so
// that every tool accepts the same files (egress report too).
func ParseEvent(line []byte) (*audit.Event, error) { return parseEvent(line) }
