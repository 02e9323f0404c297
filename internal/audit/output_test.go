package audit

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOutput: ParseOutput never panics; an error is an *OutputError
// wrapping ErrOutput; an accepted syslog output names HOST:PORT with a port
// in 1-65535, and parsing "scheme://" + that address gives the same output.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"stdout", "file:/var/log/egress.log", "file:", "syslog+udp://127.0.0.1:514",
		"syslog+tcp://siem.example:6514", "syslog+tls://[::1]:6514/", "syslog+tcp://siem:514/x", "syslog+tcp://h:0",
		"syslog+tls://user:pw@h:6514", "syslog+udp://h:514?q=1", "syslog+tcp://[::1:514", "kafka://x"} {
		f.Add(s)
	}
	schemes := map[outputKind]string{outSyslogUDP: schemeSyslogUDP, outSyslogTCP: schemeSyslogTCP, outSyslogTLS: schemeSyslogTLS}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOutput(s)
		if err != nil {
			var oe *OutputError
			if !errors.As(err, &oe) || !errors.Is(err, ErrOutput) || oe.Value != s || oe.Problem == "" {
				t.Fatalf("parseOutput(%q): error %#v", s, err)
			}
			return
		}
		switch o.kind {
		case outStdout:
			if s != "stdout" {
				t.Fatalf("%q parsed as stdout", s)
			}
		case outFile:
			if o.path == "" || strings.ContainsRune(o.path, 0) || "file:"+o.path != s {
				t.Fatalf("%q: file path %q", s, o.path)
			}
		default:
			host, port, err := net.SplitHostPort(o.addr)
			n, nerr := strconv.Atoi(port)
			if err != nil || host != o.host || host == "" || nerr != nil || n < 1 || n > 65535 {
				t.Fatalf("%q: addr %q host %q", s, o.addr, o.host)
			}
			again, err := parseOutput(schemes[o.kind] + "://" + o.addr)
			if err != nil || again != o {
				t.Fatalf("%q: %+v; its address again: %+v, %v", s, o, again, err)
			}
		}
	})
}
