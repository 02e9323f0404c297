package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// Over a limit, the transparent listeners close the connection (a redirected
// client has no proxy to read a 503 from), and the refusal is logged.
func TestTransparentOverLimit(t *testing.T) {
	cfg := tpConfig(1, 1, `
tls { hello_timeout = "5s" }
limits { per_source = 1 }
`)
	p := Start(t, cfg, nil)

	// The one slot of 127.0.0.1: a connection that has sent nothing yet.
	DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	active := regexp.MustCompile(`(?m)^egress_active_connections\{listener="transparent_https"\} 1$`)
	deadline := time.Now().Add(5 * time.Second)
	for !active.MatchString(p.Metrics(t)) {
		if time.Now().After(deadline) {
			t.Fatal("first connection not admitted")
		}
		time.Sleep(20 * time.Millisecond)
	}

	c := DialFrom(t, "127.0.0.1", p.HTTPSAddr)
	c.Write(tpHello(t))
	if _, b := tpClosedWithin(t, c, 4*time.Second); len(b) != 0 {
		t.Fatalf("transparent_https answered %q over the limit", b)
	}
	ev := tpEvent(t, p, "transparent_https", "event.reason", "connection_limit")
	if ev.Str("event.action") != "deny" || ev.Str("egress.segment") != "office" || !strings.Contains(ev.Str("error.message"), "per_source") {
		t.Fatalf("event %v", ev)
	}
	if !strings.Contains(p.Metrics(t), `egress_connections_rejected_total{listener="transparent_https",reason="per_source"} 1`) {
		t.Fatal("refusal not counted")
	}

	c = DialFrom(t, "127.0.0.1", p.HTTPAddr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"))
	if _, b := tpClosedWithin(t, c, 4*time.Second); len(b) != 0 {
		t.Fatalf("transparent_http answered over a limit instead of closing (SPEC §8): %q", tpFirstLine(b))
	}
	tpEvent(t, p, "transparent_http", "event.reason", "connection_limit")
}

func tpFirstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}
