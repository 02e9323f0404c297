package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real command-line clients through the explicit proxy.

// pxTool finds a client program, or skips loudly (CI installs curl and
// openssl).
func pxTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED: %s is not installed; this end-to-end test needs a real %s client", name, name)
	}
	return path
}

// pxRun runs a client with a clean environment (no proxy variables, no rc
// files) and a 20 s bound; it returns stdout, stderr and the exit code.
func pxRun(t *testing.T, stdin string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	cmd.Stdin = strings.NewReader(stdin)
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

func TestProxyCurl(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	plainOrigin := NewOrigin(t, nil, nil)
	p := Start(t, baseConfig, nil)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"-q", "-sS", "--max-time", "15", "-x", "http://" + p.ProxyAddr, "--cacert", caFile}

	t.Run("https-allowed", func(t *testing.T) {
		out, errs, code := pxRun(t, "", curl, append(base, "https://allowed.test:"+itoa(origin.Port)+"/curl")...)
		if code != 0 || out != "hello from allowed.test:"+itoa(origin.Port)+" /curl" {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
	})
	t.Run("https-denied", func(t *testing.T) {
		before := origin.Conns.Load()
		_, errs, code := pxRun(t, "", curl, append(base, "https://www.tiktok.com:"+itoa(origin.Port)+"/")...)
		if code != 56 || !strings.Contains(errs, "403") {
			t.Fatalf("exit %d (want 56), stderr %s", code, errs)
		}
		if origin.Conns.Load() != before {
			t.Fatal("denied destination received a connection")
		}
	})
	t.Run("http-denied", func(t *testing.T) {
		out, errs, code := pxRun(t, "", curl, append(base, "-i", "http://www.tiktok.com:"+itoa(plainOrigin.Port)+"/")...)
		if code != 0 || !strings.HasPrefix(out, "HTTP/1.1 403") || !strings.Contains(out, "Proxy-Status: "+pxDeniedStatus) ||
			!strings.Contains(out, "no-social") {
			t.Fatalf("exit %d, out %s, stderr %s", code, out, errs)
		}
		pxNoConns(t, &plainOrigin.Conns, "denied plain origin")
	})
	t.Run("http-allowed", func(t *testing.T) {
		out, errs, code := pxRun(t, "", curl, append(base, "http://allowed.test:"+itoa(plainOrigin.Port)+"/p")...)
		if code != 0 || out != "hello from allowed.test:"+itoa(plainOrigin.Port)+" /p" {
			t.Fatalf("exit %d, out %q, stderr %s", code, out, errs)
		}
	})
}

func TestProxyOpenSSL(t *testing.T) {
	openssl := pxTool(t, "openssl")
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "allowed.test", "www.tiktok.com")
	p := Start(t, baseConfig, nil)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	args := func(sni string) []string {
		return []string{"s_client", "-proxy", p.ProxyAddr, "-connect", "allowed.test:" + itoa(origin.Port),
			"-servername", sni, "-CAfile", caFile, "-verify_return_error"}
	}

	t.Run("denied-sni", func(t *testing.T) {
		out, errs, code := pxRun(t, "", openssl, args("www.tiktok.com")...)
		all := strings.ToLower(out + errs)
		if code == 0 || !strings.Contains(all, "alert access denied") {
			t.Fatalf("exit %d, want a failure with an access denied alert; output:\n%s\n%s", code, out, errs)
		}
		pxNoConns(t, &origin.Conns, "origin")
		p.WaitEvent(t, 5*time.Second, pxEventWith("tls.client.server_name", "www.tiktok.com", "event.reason", "sni_mismatch"))
	})
	t.Run("allowed-sni", func(t *testing.T) {
		out, errs, code := pxRun(t, "", openssl, args("allowed.test")...)
		if code != 0 || !strings.Contains(out, "CONNECTED") || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Fatalf("exit %d; output:\n%s\n%s", code, out, errs)
		}
	})
}
