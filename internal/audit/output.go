package audit

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// outputKind is the kind of sink an Output names.
type outputKind int

const (
	outStdout outputKind = iota
	outFile
	outSyslogUDP
	outSyslogTCP
	outSyslogTLS
)

// Output scheme prefixes.
const (
	outputStdout    = "stdout"
	outputFile      = "file:"
	schemeSyslogUDP = "syslog+udp"
	schemeSyslogTCP = "syslog+tcp"
	schemeSyslogTLS = "syslog+tls"
)

// output is a parsed Options.Output.
type output struct {
	kind outputKind
	path string // file
	addr string // syslog: host:port
	host string // syslog: host (TLS server name by default)
}

// ParseOutput checks a log output string: "stdout", "file:PATH",
// "syslog+udp://HOST:PORT", "syslog+tcp://HOST:PORT" or "syslog+tls://HOST:PORT".
// The error (wrapping ErrOutput) says what is wrong and what is expected.
func ParseOutput(s string) error {
	_, err := parseOutput(s)
	return err
}

func parseOutput(s string) (output, error) {
	const want = `want "stdout", "file:PATH" or "syslog+udp|syslog+tcp|syslog+tls://HOST:PORT"`
	switch {
	case s == outputStdout:
		return output{kind: outStdout}, nil
	case strings.HasPrefix(s, outputFile):
		p := strings.TrimPrefix(s, outputFile)
		if p == "" {
			return output{}, fmt.Errorf("%w %q: empty file path; %s", ErrOutput, s, want)
		}
		if strings.ContainsRune(p, 0) {
			return output{}, fmt.Errorf("%w %q: file path contains a NUL byte", ErrOutput, s)
		}
		return output{kind: outFile, path: p}, nil
	case !strings.Contains(s, "://"):
		return output{}, fmt.Errorf("%w %q: %s", ErrOutput, s, want)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return output{}, fmt.Errorf("%w %q: %v; %s", ErrOutput, s, err, want)
	}
	o := output{}
	switch u.Scheme {
	case schemeSyslogUDP:
		o.kind = outSyslogUDP
	case schemeSyslogTCP:
		o.kind = outSyslogTCP
	case schemeSyslogTLS:
		o.kind = outSyslogTLS
	default:
		return output{}, fmt.Errorf("%w %q: unknown scheme %q; %s", ErrOutput, s, u.Scheme, want)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return output{}, fmt.Errorf("%w %q: only HOST:PORT may follow %s://", ErrOutput, s, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return output{}, fmt.Errorf("%w %q: want HOST:PORT after %s:// (IPv6 as [addr]:port)", ErrOutput, s, u.Scheme)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return output{}, fmt.Errorf("%w %q: port %q is not a number in 1-65535", ErrOutput, s, port)
	}
	o.host = host
	o.addr = net.JoinHostPort(host, port)
	return o, nil
}
