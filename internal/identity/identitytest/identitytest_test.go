package identitytest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestServersStart checks the fixtures themselves with the servers' own
// clients: a user binds and sees its groups, and kinit gets a TGT.
func TestServersStart(t *testing.T) {
	l := StartLDAP(t)
	out, err := exec.Command("ldapsearch", "-x", "-H", l.URL, "-D", "uid=alice,"+LDAPPeopleDN, "-w", AlicePassword,
		"-b", LDAPGroupsDN, "(member=uid=alice,"+LDAPPeopleDN+")", "cn").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cn: communication") {
		t.Fatalf("ldapsearch: %v\n%s", err, out)
	}
	k := StartKDC(t)
	cc := k.Kinit(t, "alice")
	cmd := exec.Command("klist", "-c", cc)
	cmd.Env = append(os.Environ(), k.Env()...)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "krbtgt/"+Realm) {
		t.Fatalf("klist: %v\n%s", err, out)
	}
	k.Stop(t)
	k.Start(t)
	l.Stop(t)
	l.Start(t)
}
