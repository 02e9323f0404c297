package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"golang.org/x/crypto/bcrypt"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// Figures for new CONNECT tunnels per second with Negotiate, with cached
// Basic, and unauthenticated (same binary, same machine, same run). Each
// iteration: new TCP connection to the proxy, CONNECT (with its
// Proxy-Authorization), the proxy dials the loopback origin, 200, close.
// Negotiate tokens are made by gokrb5's client before the clock starts (one
// fresh authenticator each: they are single-use). Run with
//
//	EGRESS_MEASURE=1 go test ./internal/e2e -run TestMeasureIdentityTunnels -v
func TestMeasureIdentityTunnels(t *testing.T) {
	measureOnly(t)
	const n, conc = 4000, 8
	_, port, _ := RawOrigin(t, func(c net.Conn) { c.Close() })
	kdc := identitytest.StartKDC(t)
	tmp := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte(identitytest.AlicePassword), bcrypt.DefaultCost)
	htpasswd := filepath.Join(tmp, "users.htpasswd")
	os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600)
	base := fmt.Sprintf(measureCfg, `"bench.test" = "127.0.0.1"`)
	authCfg := strings.Replace(base, `default = "allow"`, `default = "allow"
  require_auth = true`, 1) + `
auth {
  allow_basic_without_tls = true
  htpasswd_file = "` + htpasswd + `"
  kerberos {
    keytab = "` + kdc.Keytab + `"
  }
}
`
	dir := identitytest.StartLDAP(t)
	pwFile := filepath.Join(tmp, "bind.pw")
	os.WriteFile(pwFile, []byte(identitytest.LDAPServicePass+"\n"), 0o600)
	ldapCfg := strings.Replace(authCfg, "kerberos {", `ldap {
    url                = "`+dir.URL+`"
    bind_dn            = "`+identitytest.LDAPServiceDN+`"
    bind_password_file = "`+pwFile+`"
    user_dn_template   = "`+identitytest.LDAPUserTemplate+`"
    group_base         = "`+identitytest.LDAPGroupsDN+`"
    group_filter       = "(member={dn})"
  }
  kerberos {`, 1)
	kcfg, err := config.Load(kdc.Krb5Conf)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword("alice", identitytest.Realm, identitytest.AlicePassword, kcfg, client.DisablePAFXFAST(true))
	if err := cl.Login(); err != nil {
		t.Fatal(err)
	}
	tokens := make([]string, 2*n)
	for i := range tokens {
		ct, err := spnego.SPNEGOClient(cl, identitytest.ServicePrincipal).InitSecContext()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ct.Marshal()
		tokens[i] = "Negotiate " + base64.StdEncoding.EncodeToString(b)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+identitytest.AlicePassword))

	run := func(name, cfg string, header func(i int) string) {
		p := Start(t, cfg, nil)
		// Warm up (and, for Basic, fill the cache).
		if code := measureConnect(t, p.ProxyAddr, port, header(0)); code != 200 {
			t.Fatalf("%s: warm-up CONNECT: %d", name, code)
		}
		var next, fails atomic.Int64
		next.Store(1)
		var wg sync.WaitGroup
		start := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if measureConnect(t, p.ProxyAddr, port, header(i)) != 200 {
						fails.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		t.Logf("%-12s %d CONNECT tunnels (c=%d) in %v: %.0f tunnels/s, %d not 200", name, n-1, conc, d.Round(time.Millisecond),
			float64(n-1)/d.Seconds(), fails.Load())
		if fails.Load() > 0 {
			t.Errorf("%s: %d tunnels failed", name, fails.Load())
		}
	}
	run("none", base, func(int) string { return "" })
	run("basic-cached", authCfg, func(int) string { return basic })
	run("negotiate", authCfg, func(i int) string { return tokens[i] })
	run("negotiate+ldap", ldapCfg, func(i int) string { return tokens[n+i] }) // groups from the directory
}

// measureConnect opens one tunnel to bench.test:port and returns the status.
func measureConnect(t *testing.T, proxy string, port int, auth string) int {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("CONNECT bench.test:%d HTTP/1.1\r\nHost: bench.test:%d\r\n", port, port)
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0
	}
	return resp.StatusCode
}
