package identity

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// TestKerberosCurlInterop: tokens made by MIT's GSS-API (curl
// --proxy-negotiate with a kinit ticket cache) are accepted, and curl is
// content with a final answer that carries no response token. The "proxy"
// here is a stub that answers every request itself; nothing is forwarded.
func TestKerberosCurlInterop(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("SKIPPED: curl not installed; this interop test did NOT run")
	}
	k := identitytest.StartKDC(t)
	kv, err := NewKerberos(KerberosConfig{Keytab: k.Keytab, ServicePrincipal: identitytest.ServicePrincipal}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := strings.CutPrefix(r.Header.Get("Proxy-Authorization"), "Negotiate ")
		if !ok {
			w.Header().Set("Proxy-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		tok, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id, _, err := kv.VerifyNegotiate(r.Context(), tok)
		if err != nil {
			w.Header().Set("Proxy-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusProxyAuthRequired)
			w.Write([]byte(err.Error()))
			return
		}
		w.Write([]byte("hello " + id.User + "@" + id.Domain))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	curl := func(cc string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "15", "-o", "-", "-w", " %{http_code}",
			"--proxy", "http://localhost:"+itoa(port), "--proxy-negotiate", "-U", ":", "http://target.test/")
		cmd.Env = append(os.Environ(), "KRB5_CONFIG="+k.Krb5Conf, "KRB5CCNAME="+cc, "NO_PROXY=", "no_proxy=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	cc := k.Kinit(t, "alice")
	out, err := curl(cc)
	if err != nil || !strings.HasSuffix(out, "hello alice@"+identitytest.Realm+" 200") {
		t.Fatalf("curl --proxy-negotiate: %v: %q", err, out)
	}
	// A second run makes a new authenticator (no false replay).
	if out, err = curl(cc); err != nil || !strings.HasSuffix(out, " 200") {
		t.Fatalf("second curl: %v: %q", err, out)
	}
	// Without a ticket and with the KDC down, curl sends no token: 407.
	k.Stop(t)
	empty := "FILE:" + k.Dir + "/cc-empty"
	if out, _ = curl(empty); !strings.HasSuffix(out, " 407") {
		t.Fatalf("no ticket, KDC down: %q; want 407", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
