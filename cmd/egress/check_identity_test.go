package main

import (
	"bytes"
	"strings"
	"testing"
)

// egress check -user NAME -groups a,b decides as the explicit proxy would
// for an identified client, and shows the identity in the trace; without
// -user, the exception's request is auth_required.
func TestCheckIdentity(t *testing.T) {
	const cfg = "../../config/examples/government.hcl"
	for _, c := range []struct {
		args []string
		want []string
		code int
	}{
		{[]string{"-user", "phone-0107", "-groups", "staff, communication"}, []string{"decision: allow", "rule: institutional-tiktok-by-identity",
			"groups: communication,staff", `identity: user "phone-0107", groups [communication, staff]`}, 0},
		{[]string{"-user", "agent-0042", "-groups", "staff"}, []string{"decision: deny", "rule: no-tiktok",
			`"institutional-tiktok-by-identity" (../../config/examples/government.hcl`}, 0},
		{nil, []string{"decision: deny", "reason: auth_required", "no match: needs an identified user", "identity check: the proxy answers 407"}, 0},
		{[]string{"-groups", "communication"}, nil, 2},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"check", "-config", cfg, "-source", "10.20.9.9", "-host", "www.tiktok.com"}, c.args...)
		if code := run(args, &out, &errb); code != c.code {
			t.Fatalf("%v: exit %d, stderr %s", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out.String())
			}
		}
	}
}
