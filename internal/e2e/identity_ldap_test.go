package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// identityConfig is the ministry segment of issue 17: TikTok is banned, except
// for the communication group; everyone must authenticate. AUTH is replaced
// by the auth block of each test.
const identityConfig = `
proxy { listen = "{{PROXY}}" }
admin { listen = "{{ADMIN}}" }
tls { hello_timeout = "2s" }
upstream {
  hosts = {
    "allowed.test"   = "127.0.0.1"
    "bench.test"     = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
AUTH
category "tiktok" { domains = ["tiktok.com"] }
segment "ministry" {
  sources      = ["127.0.0.1/32"]
  default      = "allow"
  require_auth = true
  rule "institutional-tiktok" {
    action     = "allow"
    groups     = ["communication"]
    categories = ["tiktok"]
  }
  rule "no-tiktok" {
    action     = "deny"
    categories = ["tiktok"]
  }
}
`

// idRun runs a client with a clean environment plus env, bounded to 20 s.
func idRun(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out; stderr: %s", name, args, errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// idEvent waits for the event of a request to host by user (user "" : an
// event without user.name).
func idEvent(t *testing.T, p *Proc, host, user string, match func(Event) bool) Event {
	t.Helper()
	return p.WaitEvent(t, 10*time.Second, func(e Event) bool {
		h := e.Str("tls.client.server_name")
		if h == "" {
			h = e.Str("destination.domain")
		}
		return h == host && e.Str("user.name") == user && (match == nil || match(e))
	})
}

func TestIdentityLDAP(t *testing.T) {
	curl := pxTool(t, "curl")
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
  allow_basic_without_tls = true
  ldap {
    url                = "`+dir.URL+`"
    bind_dn            = "`+identitytest.LDAPServiceDN+`"
    bind_password_file = "`+pwFile+`"
    user_base          = "`+identitytest.LDAPPeopleDN+`"
    user_filter        = "(&(objectClass=inetOrgPerson)(uid={user}))"
    group_base         = "`+identitytest.LDAPGroupsDN+`"
    group_filter       = "(member={dn})"
    domain             = "test.egress"
    timeout            = "1s"
  }
}`, 1)
	p := Start(t, cfg, nil)
	tiktok := "https://www.tiktok.com:" + itoa(origin.Port) + "/"
	get := func(user, password, url string) (string, string, int) {
		return idRun(t, nil, curl, "-q", "-sS", "--max-time", "15", "-x", "http://"+p.ProxyAddr, "--cacert", caFile,
			"--proxy-user", user+":"+password, url)
	}

	t.Run("no credentials", func(t *testing.T) {
		_, errs, code := idRun(t, nil, curl, "-q", "-sS", "--max-time", "15", "-x", "http://"+p.ProxyAddr, "--cacert", caFile, tiktok)
		if code == 0 || !strings.Contains(errs, "407") {
			t.Fatalf("exit %d, stderr %s; want a 407", code, errs)
		}
		idEvent(t, p, "www.tiktok.com", "", pxEventWith("event.reason", "auth_required"))
	})
	t.Run("exception group reaches the banned name", func(t *testing.T) {
		out, errs, code := get("alice", identitytest.AlicePassword, tiktok)
		if code != 0 || !strings.HasPrefix(out, "hello from www.tiktok.com") {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
		ev := idEvent(t, p, "www.tiktok.com", "alice", pxEventWith("event.action", "allow"))
		if ev.Str("egress.auth.method") != "basic" || !strings.Contains(ev.Str("user.group.name"), "communication") {
			t.Errorf("event %v", ev)
		}
		for _, secret := range []string{identitytest.AlicePassword, "YWxpY2U6"} { // nor its Basic base64
			if strings.Contains(p.stdout.String()+p.Stderr(), secret) {
				t.Errorf("%q appears in egress's output", secret)
			}
		}
	})
	t.Run("another user is denied by the ban", func(t *testing.T) {
		before := origin.Conns.Load()
		_, errs, code := get("bob", identitytest.BobPassword, tiktok)
		if code != 56 || !strings.Contains(errs, "403") {
			t.Fatalf("exit %d (want 56), stderr %s", code, errs)
		}
		pxNoConns(t, fakeCount{origin.Conns.Load() - before}, "origin (bob)")
		idEvent(t, p, "www.tiktok.com", "bob", pxEventWith("event.action", "deny"))
		// bob reaches other names.
		if out, errs, code := get("bob", identitytest.BobPassword, "https://allowed.test:"+itoa(origin.Port)+"/"); code != 0 || !strings.HasPrefix(out, "hello from allowed.test") {
			t.Fatalf("bob to allowed.test: exit %d, out %q, stderr %s", code, out, errs)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		before := authFailures(t, p)
		_, errs, code := get("alice", "not-"+identitytest.AlicePassword, tiktok)
		if code == 0 || !strings.Contains(errs, "407") {
			t.Fatalf("exit %d, stderr %s; want a 407", code, errs)
		}
		idEvent(t, p, "www.tiktok.com", "", pxEventWith("event.reason", "auth_failed"))
		if after := authFailures(t, p); after <= before {
			t.Errorf("failed authentications not counted: %v then %v", before, after)
		}
		if strings.Contains(p.stdout.String()+p.Stderr(), "not-"+identitytest.AlicePassword) {
			t.Error("the wrong password appears in egress's output")
		}
	})
	t.Run("injection in the user name", func(t *testing.T) {
		for _, user := range []string{"*", ")(uid=*"} {
			_, errs, code := get(user, identitytest.AlicePassword, "https://allowed.test:"+itoa(origin.Port)+"/")
			if code == 0 || !strings.Contains(errs, "407") {
				t.Fatalf("user %q: exit %d, stderr %s; want a 407", user, code, errs)
			}
		}
	})
	t.Run("directory down fails closed, then recovers", func(t *testing.T) {
		dir.Stop(t)
		before := origin.Conns.Load()
		// carol has not been checked yet: nothing cached.
		_, errs, code := get("carol", identitytest.CarolPassword, "https://allowed.test:"+itoa(origin.Port)+"/")
		if code == 0 || !strings.Contains(errs, "503") {
			t.Fatalf("directory down: exit %d, stderr %s; want a 503 (fail closed)", code, errs)
		}
		if origin.Conns.Load() != before {
			t.Fatal("directory down: the origin received a connection")
		}
		ev := idEvent(t, p, "allowed.test", "", pxEventWith("event.reason", "auth_unavailable"))
		if !strings.Contains(fmt.Sprint(ev), "ldap") {
			t.Errorf("the outage event does not say the directory failed: %v", ev)
		}
		dir.Start(t)
		out, errs, code := get("carol", identitytest.CarolPassword, "https://allowed.test:"+itoa(origin.Port)+"/")
		if code != 0 || !strings.HasPrefix(out, "hello from allowed.test") {
			t.Fatalf("after restart: exit %d, out %q, stderr %s", code, out, errs)
		}
	})
}

// fakeCount adapts a number to pxNoConns.
type fakeCount struct{ n int64 }

func (f fakeCount) Load() int64 { return f.n }

// authFailures reads egress_auth_total{method="basic",result="failure"}.
func authFailures(t *testing.T, p *Proc) float64 {
	t.Helper()
	for _, line := range strings.Split(p.Metrics(t), "\n") {
		if strings.HasPrefix(line, "egress_auth_total{") && strings.Contains(line, `method="basic"`) && strings.Contains(line, `result="failure"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatal(`no egress_auth_total{method="basic",result="failure"} in /metrics`)
	return 0
}
