package rules

import (
	"regexp"
	"strings"
	"testing"

	"github.com/egress-proxy/egress/internal/audit"
)

// hclQuote writes s as an HCL string literal (NUL as \u0000).
func hclQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\x00", `\u0000`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// TestLogOutputValidateAgreesWithRun: every log.output value is accepted by
// `egress validate` (the loader's diagnostics) exactly when `egress run` can
// open it (audit.ParseOutput), and a rejection is one diagnostic at
// file:line:col.
func TestLogOutputValidateAgreesWithRun(t *testing.T) {
	diagRe := regexp.MustCompile(`^\S+/c\.hcl:6:12: error: Invalid log output; output = "`)
	for _, tc := range []struct {
		out string
		ok  bool
	}{
		{"stdout", true},
		{"file:/var/log/egress.log", true},
		{"file:rel/egress.log", true},
		{"file:/var/log/with space.log", true},
		{"syslog+udp://127.0.0.1:514", true},
		{"syslog+tcp://siem.example:6514", true},
		{"syslog+tls://siem.example:6514/", true},
		{"syslog+tls://[::1]:6514", true},
		{"syslog+tcp://[2001:db8::7]:514", true},
		{"syslog+tcp://h:1", true},
		{"syslog+tcp://h:65535", true},
		{"", false},
		{"stderr", false},
		{"STDOUT", false},
		{"file:", false},
		{"file:/var/log/a\x00b", false},
		{"kafka://x", false},
		{"syslog://h:514", false},
		{"http://h:514", false},
		{"syslog+tcp://h", false},
		{"syslog+tcp://h:", false},
		{"syslog+tcp://:514", false},
		{"syslog+tcp://", false},
		{"syslog+tcp://h:0", false},
		{"syslog+tcp://h:65536", false},
		{"syslog+tcp://h:70000", false},
		{"syslog+tcp://h:-1", false},
		{"syslog+tcp://h:x", false},
		{"syslog+tcp://siem:514/x", false},
		{"syslog+udp://h:514/path/", false},
		{"syslog+udp://h:514?q=1", false},
		{"syslog+udp://h:514#frag", false},
		{"syslog+tls://user:pw@h:6514", false},
		{"syslog+tls://user@h:6514", false},
		{"syslog+tcp://::1:514", false},
		{"syslog+tcp://[::1:514", false},
		{"syslog+tcp://[::1]", false},
		{"syslog+tcp://h :514", false},
	} {
		t.Run(tc.out, func(t *testing.T) {
			runErr := audit.ParseOutput(tc.out)
			if (runErr == nil) != tc.ok {
				t.Errorf("egress run (audit.ParseOutput): %v; want ok=%v", runErr, tc.ok)
			}
			cfg, diags := loadSettings(t, "segment \"s\" {\n  sources = [\"10.20.0.0/16\"]\n  default = \"allow\"\n}\nlog {\n  output = "+hclQuote(tc.out)+"\n}\n")
			_ = cfg
			valid := diags == ""
			if valid != tc.ok || valid != (runErr == nil) {
				t.Fatalf("egress validate: ok=%v (diagnostics %q); egress run: %v; want both ok=%v", valid, diags, runErr, tc.ok)
			}
			if !valid && (strings.Count(diags, "\n") != 1 || !diagRe.MatchString(diags)) {
				t.Fatalf("diagnostic %q: want one error at c.hcl:6:12", diags)
			}
		})
	}
}
