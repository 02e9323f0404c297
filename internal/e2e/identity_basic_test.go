package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Basic against an htpasswd file over the TLS proxy listener (SPEC §10.2),
// with curl and with Go's client: the communication group reaches the banned
// name, another user is denied with user.name in the event, no credentials
// get 407 with the Basic challenge, a wrong password gets 407, is counted and
// appears in no log, and Proxy-Authorization never reaches an origin.
func TestIdentityBasicTLS(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	var leaked atomic.Int64
	origin := NewOrigin(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			leaked.Add(1)
		}
		fmt.Fprintf(w, "hello from %s %s", r.Host, r.URL.Path)
	}), "allowed.test", "www.tiktok.com")
	plain := NewOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			leaked.Add(1)
		}
		fmt.Fprintf(w, "plain %s", r.URL.Path)
	}))
	files := idFiles(t, ca)
	p := Start(t, idCfg("", ""), files)
	caFile := filepath.Join(filepath.Dir(p.ConfigPath), "ca.pem")
	base := []string{"-q", "-sS", "--max-time", "15", "--proxy", "https://" + p.TLSAddr, "--proxy-cacert", caFile, "--cacert", caFile}
	tiktok := "https://www.tiktok.com:" + itoa(origin.Port) + "/feed"

	t.Run("communication-reaches-tiktok", func(t *testing.T) {
		out, errs, code := pxRun(t, "", curl, append(base, "--proxy-user", "alice:"+idPasswords["alice"], tiktok)...)
		if code != 0 || !strings.HasPrefix(out, "hello from www.tiktok.com") {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
		e := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("user.name") == "alice" && e.Str("destination.domain") == "www.tiktok.com" && e.Str("event.action") == "allow"
		})
		if e.Str("rule.name") != "institutional-tiktok" || e.Str("egress.auth.method") != "basic" ||
			e.Str("egress.listener") != "proxy_tls" || e.Str("user.group.name") != `["communication","staff"]` {
			t.Fatalf("event %v", e)
		}
	})
	t.Run("other-user-denied", func(t *testing.T) {
		before := origin.Conns.Load()
		_, errs, code := pxRun(t, "", curl, append(base, "--proxy-user", "bob:"+idPasswords["bob"], tiktok)...)
		if code != 56 || !strings.Contains(errs, "403") {
			t.Fatalf("exit %d (want 56, 403), stderr %s", code, errs)
		}
		e := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("user.name") == "bob" && e.Str("event.action") == "deny"
		})
		if e.Str("rule.name") != "no-tiktok" || e.Str("user.group.name") != `["staff"]` {
			t.Fatalf("event %v", e)
		}
		if origin.Conns.Load() != before {
			t.Fatal("the denied destination received a connection")
		}
	})
	t.Run("no-credentials-407", func(t *testing.T) {
		_, errs, code := pxRun(t, "", curl, append(base, "https://allowed.test:"+itoa(origin.Port)+"/")...)
		if code != 56 || !strings.Contains(errs, "407") {
			t.Fatalf("exit %d (want 56, 407), stderr %s", code, errs)
		}
		// The challenge, read by hand.
		tc, err := proxyTLSDial(t, p, "127.0.0.1", ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test\r\n\r\n", origin.Port)
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(tc), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") != `Basic realm="Ministry proxy", charset="UTF-8"` {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("event.reason") == "auth_required" && e.Str("http.response.status_code") == "407" && e.Str("egress.listener") == "proxy_tls"
		})
	})
	t.Run("wrong-password-407-counted-not-logged", func(t *testing.T) {
		before := metricValue(t, p, `egress_auth_total{method="basic",result="failure"}`)
		const wrong = "Wr0ng-Passw0rd-xyzzy"
		_, errs, code := pxRun(t, "", curl, append(base, "--proxy-user", "alice:"+wrong, tiktok)...)
		if code != 56 || !strings.Contains(errs, "407") {
			t.Fatalf("exit %d (want 56, 407), stderr %s", code, errs)
		}
		p.WaitEvent(t, 5*time.Second, func(e Event) bool { return e.Str("event.reason") == "auth_failed" })
		if after := metricValue(t, p, `egress_auth_total{method="basic",result="failure"}`); after != before+1 {
			t.Fatalf("failures %v -> %v", before, after)
		}
		logs := p.stdout.String() + p.Stderr()
		for _, secret := range []string{wrong, idPasswords["alice"], idPasswords["bob"],
			base64.StdEncoding.EncodeToString([]byte("alice:" + wrong)), base64.StdEncoding.EncodeToString([]byte("alice:" + idPasswords["alice"]))} {
			if strings.Contains(logs, secret) {
				t.Fatalf("a password or credential (%q) is in the logs", secret)
			}
		}
		if m := p.Metrics(t); strings.Contains(m, "alice") || strings.Contains(m, "bob") {
			t.Fatal("a user name in the metrics")
		}
	})
	t.Run("go-client", func(t *testing.T) {
		pu, _ := url.Parse("https://alice:" + url.QueryEscape(idPasswords["alice"]) + "@" + p.TLSAddr)
		tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
		for _, u := range []string{tiktok, "http://allowed.test:" + itoa(plain.Port) + "/plain", "http://allowed.test:" + itoa(plain.Port) + "/again"} {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", u, resp.StatusCode, b)
			}
		}
		p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("user.name") == "alice" && e.Str("url.path") == "/again" && e.Str("event.action") == "allow"
		})
		if n := leaked.Load(); n != 0 {
			t.Fatalf("Proxy-Authorization reached an origin %d times", n)
		}
	})
}

// Basic is neither offered nor accepted on the plain listener unless
// auth.allow_basic_without_tls is set.
func TestIdentityBasicPlainListener(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, nil, nil)
	target := "http://allowed.test:" + itoa(origin.Port) + "/"
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_basic_without_tls=%v", allow), func(t *testing.T) {
			extra := ""
			if allow {
				extra = "allow_basic_without_tls = true"
			}
			p := Start(t, idCfg("", extra), idFiles(t, ca))
			out, errs, code := pxRun(t, "", curl, "-q", "-sS", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_code} %header{proxy-authenticate}",
				"-x", "http://"+p.ProxyAddr, "--proxy-user", "alice:"+idPasswords["alice"], target)
			if code != 0 {
				t.Fatalf("exit %d stderr %s", code, errs)
			}
			if allow && out != "200 " || !allow && out != "407 " {
				t.Fatalf("got %q", out)
			}
			if !allow {
				e := p.WaitEvent(t, 5*time.Second, func(e Event) bool { return e.Str("event.reason") == "auth_failed" })
				if e.Str("egress.listener") != "proxy" || !strings.Contains(e.Str("error.message"), "not offered") {
					t.Fatalf("event %v", e)
				}
			}
		})
	}
}

// A reload of the group file changes who reaches the exception: a user
// removed from "communication" is denied at the next connection.
func TestIdentityReloadGroups(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "www.tiktok.com")
	files := idFiles(t, ca)
	p := Start(t, idCfg("", "")+"\nlimits { reload_interval = \"200ms\" }\n", files)
	dir := filepath.Dir(p.ConfigPath)
	args := []string{"-q", "-sS", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_code}",
		"--proxy", "https://" + p.TLSAddr, "--proxy-cacert", filepath.Join(dir, "ca.pem"), "--cacert", filepath.Join(dir, "ca.pem"),
		"--proxy-user", "bob:" + idPasswords["bob"], "https://www.tiktok.com:" + itoa(origin.Port) + "/"}
	if _, errs, code := pxRun(t, "", curl, args...); code != 56 || !strings.Contains(errs, "403") {
		t.Fatalf("before: exit %d %s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(dir, "groups.txt"), []byte("communication: alice bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errs, code := pxRun(t, "", curl, args...)
		if code == 0 && out == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob never reached the exception after the reload: exit %d %q %s\n%s", code, out, errs, p.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := p.WaitEvent(t, 5*time.Second, func(e Event) bool { return e.Str("user.name") == "bob" && e.Str("event.action") == "allow" })
	if e.Str("user.group.name") != `["communication"]` {
		t.Fatalf("event %v", e)
	}
}

// An identity source that cannot check credentials fails closed: 503
// auth_unavailable with the reason in the event, counted, never an allow; a
// user of the htpasswd file (checked first) is not affected.
func TestIdentitySourceUnavailableFailsClosed(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, nil, nil)
	// Nothing listens on 127.0.0.1:1: the directory is down.
	p := Start(t, idCfg("", `allow_basic_without_tls = true
  ldap {
    url              = "ldap://127.0.0.1:1"
    user_dn_template = "uid={user},ou=people,dc=example,dc=org"
    timeout          = "2s"
  }`), idFiles(t, ca))
	get := func(user, pw string) (string, string, int) {
		return pxRun(t, "", curl, "-q", "-sS", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_code}",
			"-x", "http://"+p.ProxyAddr, "--proxy-user", user+":"+pw, "http://allowed.test:"+itoa(origin.Port)+"/")
	}
	before := origin.Conns.Load()
	if out, errs, code := get("dave", "dave-Secret-99"); code != 0 || out != "503" {
		t.Fatalf("directory user while LDAP is down: exit %d %q %s", code, out, errs)
	}
	if origin.Conns.Load() != before {
		t.Fatal("a request reached the origin without an identity")
	}
	e := p.WaitEvent(t, 5*time.Second, func(e Event) bool { return e.Str("event.reason") == "auth_unavailable" })
	if e.Str("event.action") != "deny" || e.Str("http.response.status_code") != "503" || !strings.Contains(e.Str("error.message"), "ldap") ||
		e.Str("user.name") != "" {
		t.Fatalf("event %v", e)
	}
	if v := metricValue(t, p, `egress_auth_total{method="basic",result="unavailable"}`); v < 1 {
		t.Fatalf("unavailable not counted: %v", v)
	}
	if strings.Contains(p.stdout.String()+p.Stderr(), "dave-Secret-99") {
		t.Fatal("the password is in the logs")
	}
	// The htpasswd file is checked first: its users still get in.
	if out, errs, code := get("alice", idPasswords["alice"]); code != 0 || out != "200" {
		t.Fatalf("htpasswd user while LDAP is down: exit %d %q %s", code, out, errs)
	}
}

// On one keep-alive connection, the identity a header established serves the
// follow-up requests without one; a new header is checked again, and a wrong
// one drops the identity.
func TestIdentityKeepAlive(t *testing.T) {
	ca := NewCA(t)
	origin := NewOrigin(t, nil, nil)
	p := Start(t, idCfg("", ""), idFiles(t, ca))
	tc, err := proxyTLSDial(t, p, "127.0.0.1", ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	do := func(path, auth string) int {
		t.Helper()
		h := ""
		if auth != "" {
			h = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(auth)) + "\r\n"
		}
		fmt.Fprintf(tc, "GET http://allowed.test:%d%s HTTP/1.1\r\nHost: allowed.test:%d\r\n%s\r\n", origin.Port, path, origin.Port, h)
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		path, auth string
		want       int
	}{
		{"/1", "alice:" + idPasswords["alice"], 200},
		{"/2", "", 200}, // the connection's identity
		{"/3", "bob:" + idPasswords["bob"], 200},
		{"/4", "", 200}, // now bob
		{"/5", "bob:wrong-password", 407},
		{"/6", "", 407}, // a failed header drops the identity
	}
	for _, s := range steps {
		if got := do(s.path, s.auth); got != s.want {
			t.Fatalf("%s: %d, want %d", s.path, got, s.want)
		}
	}
	for path, user := range map[string]string{"/2": "alice", "/4": "bob"} {
		p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("url.path") == path && e.Str("user.name") == user && e.Str("event.action") == "allow"
		})
	}
}

// A client that asks first and identifies when told (curl --proxy-anyauth,
// as a browser does): its CONNECT without credentials is answered 407, the
// connection it keeps waits for the retry (on a parker), and the retry with
// credentials, on the same connection, reaches the origin.
func TestIdentityBasicAfter407(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}), "allowed.test")
	p := Start(t, idCfg("", "allow_basic_without_tls = true"), idFiles(t, ca))
	caFile := filepath.Join(filepath.Dir(p.ConfigPath), "ca.pem")
	for i := 0; i < 2; i++ { // the second time, the proxy has served one before
		path := "/after-407-" + itoa(i)
		out, errs, code := pxRun(t, "", curl, "-q", "-sS", "-v", "--max-time", "15", "--proxy", "http://"+p.ProxyAddr,
			"--proxy-anyauth", "--proxy-user", "alice:"+idPasswords["alice"], "--cacert", caFile,
			"https://allowed.test:"+itoa(origin.Port)+path)
		if code != 0 || out != "hello "+path {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
		if !strings.Contains(errs, " 407 ") || strings.Count(errs, "Connected to") != 1 {
			t.Fatalf("want one connection carrying the 407 and the retry; curl says:\n%s", errs)
		}
		// Each try is two events: the 407 (auth_required) and the tunnel
		// (alice, allowed), logged when it ends.
		want := 2 * (i + 1)
		deadline := time.Now().Add(5 * time.Second)
		for {
			asked, allowed := 0, 0
			for _, e := range p.Events() {
				switch {
				case e.Str("destination.domain") != "allowed.test":
				case e.Str("event.reason") == "auth_required" && e.Str("event.action") == "deny" && e.Str("user.name") == "":
					asked++
				case e.Str("user.name") == "alice" && e.Str("event.action") == "allow":
					allowed++
				}
			}
			if asked+allowed == want && asked == allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("try %d: %d 407 events and %d allowed for alice, want %d each", i+1, asked, allowed, i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
