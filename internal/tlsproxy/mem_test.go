package tlsproxy

import "github.com/egress-proxy/egress/internal/memconn"

// The flow is tested over in-memory connections that half-close like TCP.
type memConn = memconn.Conn

var memPair = memconn.Pair
