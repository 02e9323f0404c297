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

// OutputError is the error of ParseOutput: Value, and Problem, a phrase
// saying what is wrong and what is expected. It wraps ErrOutput.
type OutputError struct {
	Value   string
	Problem string
}

func (e *OutputError) Error() string {
	return fmt.Sprintf("%v %q: %s", ErrOutput, e.Value, e.Problem)
}

func (e *OutputError) Unwrap() error { return ErrOutput }

// ParseOutput checks a log output string: "stdout", "file:PATH",
// "syslog+udp://HOST:PORT", "syslog+tcp://HOST:PORT" or "syslog+tls://HOST:PORT".
// It is the one validator of log.output: the config loader (egress validate)
// and New (egress run) both call it, so a value passes one exactly when it
// passes the other. The error is an *OutputError (wrapping ErrOutput).
func ParseOutput(s string) error {
	_, err := parseOutput(s)
	return err
}

func parseOutput(s string) (output, error) {
	const want = `want "stdout", "file:PATH" or "syslog+udp|syslog+tcp|syslog+tls://HOST:PORT"`
	bad := func(format string, a ...any) (output, error) {
		return output{}, &OutputError{Value: s, Problem: fmt.Sprintf(format, a...)}
	}
	switch {
	case s == outputStdout:
		return output{kind: outStdout}, nil
	case strings.HasPrefix(s, outputFile):
		p := strings.TrimPrefix(s, outputFile)
		if p == "" {
			return bad("empty file path; %s", want)
		}
		if strings.ContainsRune(p, 0) {
			return bad("file path contains a NUL byte")
		}
		return output{kind: outFile, path: p}, nil
	case !strings.Contains(s, "://"):
		return bad("%s", want)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("%v; %s", err, want)
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
		return bad("unknown scheme %q; %s", u.Scheme, want)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return bad("only HOST:PORT may follow %s://", u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return bad("want HOST:PORT after %s:// (IPv6 as [addr]:port)", u.Scheme)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port %q is not a number in 1-65535", port)
	}
	o.host = host
	o.addr = net.JoinHostPort(host, port)
	return o, nil
}
