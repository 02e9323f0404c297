package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// TestIdentityKerberos: curl --proxy-negotiate with a ticket from a real MIT
// KDC (kinit), groups from a real slapd. The proxy is named "localhost" so
// that curl asks for HTTP/localhost, the principal of the proxy's keytab.
func TestIdentityKerberos(t *testing.T) {
	curl := pxTool(t, "curl")
	kdc := identitytest.StartKDC(t)
	dir := identitytest.StartLDAP(t)
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "ca.pem")
	pwFile := filepath.Join(tmp, "bind.pw")
	os.WriteFile(caFile, ca.PEM, 0o644)
	os.WriteFile(pwFile, []byte(identitytest.LDAPServicePass+"\n"), 0o600)
	cfg := strings.Replace(identityConfig, "AUTH", `
auth {
  kerberos {
    keytab            = "`+kdc.Keytab+`"
    service_principal = "`+identitytest.ServicePrincipal+`"
  }
  ldap {
    url                = "`+dir.URL+`"
    bind_dn            = "`+identitytest.LDAPServiceDN+`"
    bind_password_file = "`+pwFile+`"
    user_dn_template   = "`+identitytest.LDAPUserTemplate+`"
    group_base         = "`+identitytest.LDAPGroupsDN+`"
    group_filter       = "(member={dn})"
    timeout            = "1s"
  }
}`, 1)
	p := Start(t, cfg, nil)
	_, port, _ := strings.Cut(p.ProxyAddr, ":")
	tiktok := "https://www.tiktok.com:" + itoa(origin.Port) + "/"
	get := func(cc, url string) (string, string, int) {
		return idRun(t, []string{"KRB5_CONFIG=" + kdc.Krb5Conf, "KRB5CCNAME=" + cc}, curl,
			"-q", "-sS", "--max-time", "15", "--proxy", "http://localhost:"+port, "--proxy-negotiate", "-U", ":",
			"--cacert", caFile, url)
	}
	alice := kdc.Kinit(t, "alice")

	t.Run("exception group reaches the banned name", func(t *testing.T) {
		out, errs, code := get(alice, tiktok)
		if code != 0 || !strings.HasPrefix(out, "hello from www.tiktok.com") {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
		ev := idEvent(t, p, "www.tiktok.com", "alice", pxEventWith("event.action", "allow"))
		if ev.Str("egress.auth.method") != "negotiate" || ev.Str("user.domain") != identitytest.Realm ||
			!strings.Contains(ev.Str("user.group.name"), "communication") {
			t.Errorf("event %v", ev)
		}
	})
	t.Run("another user is denied by the ban", func(t *testing.T) {
		before := origin.Conns.Load()
		_, errs, code := get(kdc.Kinit(t, "bob"), tiktok)
		if code != 56 || !strings.Contains(errs, "403") {
			t.Fatalf("exit %d (want 56), stderr %s", code, errs)
		}
		pxNoConns(t, fakeCount{origin.Conns.Load() - before}, "origin (bob)")
		idEvent(t, p, "www.tiktok.com", "bob", pxEventWith("event.action", "deny", "egress.auth.method", "negotiate"))
	})
	t.Run("a captured token is refused the second time", func(t *testing.T) {
		kcfg, err := config.Load(kdc.Krb5Conf)
		if err != nil {
			t.Fatal(err)
		}
		cl := client.NewWithPassword("alice", identitytest.Realm, identitytest.AlicePassword, kcfg, client.DisablePAFXFAST(true))
		if err := cl.Login(); err != nil {
			t.Fatal(err)
		}
		ct, err := spnego.SPNEGOClient(cl, identitytest.ServicePrincipal).InitSecContext()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ct.Marshal()
		tok := "Negotiate " + base64.StdEncoding.EncodeToString(b)
		if code := measureConnect(t, p.ProxyAddr, origin.Port, tok); code != 200 {
			t.Fatalf("first use: %d", code)
		}
		if code := measureConnect(t, p.ProxyAddr, origin.Port, tok); code != 407 {
			t.Fatalf("replayed token: %d; want 407", code)
		}
		idEvent(t, p, "bench.test", "", pxEventWith("event.reason", "auth_failed", "egress.auth.method", "negotiate"))
		if b64 := base64.StdEncoding.EncodeToString(b); strings.Contains(p.stdout.String()+p.Stderr(), b64[:40]) {
			t.Error("the Negotiate token appears in egress's output")
		}
	})
	t.Run("kdc down fails closed, then recovers", func(t *testing.T) {
		// carol has a TGT but no ticket for the proxy yet.
		carol := kdc.Kinit(t, "carol")
		kdc.Stop(t)
		before := origin.Conns.Load()
		_, errs, code := get(carol, "https://allowed.test:"+itoa(origin.Port)+"/")
		if code == 0 || !strings.Contains(errs, "407") {
			t.Fatalf("KDC down: exit %d, stderr %s; want a 407", code, errs)
		}
		if origin.Conns.Load() != before {
			t.Fatal("KDC down: the origin received a connection")
		}
		idEvent(t, p, "allowed.test", "", pxEventWith("event.reason", "auth_required"))
		kdc.Start(t)
		out, errs, code := get(carol, "https://allowed.test:"+itoa(origin.Port)+"/")
		if code != 0 || !strings.HasPrefix(out, "hello from allowed.test") {
			t.Fatalf("after restart: exit %d, out %q, stderr %s", code, out, errs)
		}
		idEvent(t, p, "allowed.test", "carol", pxEventWith("event.action", "allow"))
	})
}
