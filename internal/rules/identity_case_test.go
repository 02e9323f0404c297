package rules

import (
	"os"
	"path/filepath"
	"testing"
)

// A rule's users and groups match whatever case the identity source reports:
// directories compare names without regard to case, and a client must not
// slip past an exception's scope (or a ban's) by a spelling.
func TestIdentityNamesIgnoreCase(t *testing.T) {
	r := &Rule{users: []string{"Alice"}, groups: []string{"Communication"}}
	for _, tc := range []struct {
		user   string
		groups []string
		want   bool
	}{
		{"alice", nil, true},
		{"ALICE", nil, true},
		{"bob", []string{"communication"}, true},
		{"bob", []string{"COMMUNICATION"}, true},
		{"bob", []string{"staff"}, false},
		{"alicea", nil, false},
	} {
		if got := r.matchesIdentity(tc.user, tc.groups); got != tc.want {
			t.Errorf("matchesIdentity(%q, %q) = %v, want %v", tc.user, tc.groups, got, tc.want)
		}
	}
}

func TestKerberosRealmsAndSkew(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("proxy.keytab", "not parsed by the loader")
	cfgText := `
auth {
  kerberos {
    keytab        = "proxy.keytab"
    client_realms = ["PARTNER.EXAMPLE"]
    clock_skew    = "2m"
  }
}
segment "all" {
  sources = ["0.0.0.0/0"]
  default = "allow"
}
`
	write("egress.hcl", cfgText)
	cfg, diags := Load(filepath.Join(dir, "egress.hcl"), Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	kc := cfg.Auth.Sources.Kerberos
	if kc.ClockSkew.String() != "2m0s" || len(kc.ClientRealms) != 1 || kc.ClientRealms[0] != "PARTNER.EXAMPLE" {
		t.Fatalf("kerberos config = %+v", kc)
	}
}
