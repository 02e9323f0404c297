package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Client certificates from a device CA on the TLS proxy listener: a valid
// device of the communication OU reaches the exception without any password;
// an expired certificate, a revoked one (CRL) and one from another CA are
// refused at the handshake, counted, and the revoked one is an auth_failed
// event. A CRL reloaded while a device is connected ends its next request.
func TestIdentityClientCertificates(t *testing.T) {
	curl := pxTool(t, "curl")
	ca := NewCA(t)
	origin := NewOrigin(t, ca, nil, "www.tiktok.com", "allowed.test")
	dev := newDeviceCA(t, "MDM devices CA")
	now := time.Now()
	phone := dev.issue(t, "phone-alice", []string{"communication"}, now.Add(-time.Hour), now.Add(time.Hour))
	laptop := dev.issue(t, "laptop-bob", []string{"staff"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired := dev.issue(t, "phone-old", []string{"communication"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	revoked := dev.issue(t, "phone-lost", []string{"communication"}, now.Add(-time.Hour), now.Add(time.Hour))
	stranger := newDeviceCA(t, "someone else's CA").issue(t, "phone-stranger", []string{"communication"}, now.Add(-time.Hour), now.Add(time.Hour))

	files := idFiles(t, ca)
	files["devices.crt"] = dev.PEM
	files["devices.crl"] = dev.crl(t, revoked.Serial)
	p := Start(t, idCfg(`client_ca_file = "devices.crt"
  client_crl_file = "devices.crl"`, "")+"\nlimits { reload_interval = \"200ms\" }\n", files)
	dir := filepath.Dir(p.ConfigPath)
	caFile := filepath.Join(dir, "ca.pem")
	run := func(d *device, target string) (string, string, int) {
		return pxRun(t, "", curl, "-q", "-sS", "--max-time", "15", "--proxy", "https://"+p.TLSAddr, "--proxy-cacert", caFile,
			"--proxy-cert", d.CertFile, "--proxy-key", d.KeyFile, "--cacert", caFile, target)
	}
	tiktok := "https://www.tiktok.com:" + itoa(origin.Port) + "/"

	t.Run("device-in-group-reaches-tiktok", func(t *testing.T) {
		out, errs, code := run(phone, tiktok)
		if code != 0 || !strings.HasPrefix(out, "hello from www.tiktok.com") {
			t.Fatalf("exit %d out %q stderr %s", code, out, errs)
		}
		e := p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("user.name") == "phone-alice" && e.Str("event.action") == "allow"
		})
		if e.Str("egress.auth.method") != "certificate" || e.Str("user.group.name") != `["communication"]` || e.Str("rule.name") != "institutional-tiktok" {
			t.Fatalf("event %v", e)
		}
	})
	t.Run("device-outside-group-denied", func(t *testing.T) {
		_, errs, code := run(laptop, tiktok)
		if code != 56 || !strings.Contains(errs, "403") {
			t.Fatalf("exit %d stderr %s", code, errs)
		}
		p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("user.name") == "laptop-bob" && e.Str("event.action") == "deny" && e.Str("rule.name") == "no-tiktok"
		})
	})
	for _, c := range []struct {
		name string
		d    *device
	}{{"expired", expired}, {"revoked", revoked}, {"other-ca", stranger}} {
		t.Run(c.name+"-refused", func(t *testing.T) {
			before := origin.Conns.Load()
			out, errs, code := run(c.d, "https://allowed.test:"+itoa(origin.Port)+"/")
			if code == 0 || out != "" {
				t.Fatalf("%s certificate accepted: exit %d out %q stderr %s", c.name, code, out, errs)
			}
			if origin.Conns.Load() != before {
				t.Fatal("a refused device reached a destination")
			}
			// Go's client too, by hand: the handshake or the first read fails.
			tc, err := proxyTLSDial(t, p, "127.0.0.1", ca, &c.d.Cert)
			if err == nil {
				fmt.Fprintf(tc, "CONNECT allowed.test:%d HTTP/1.1\r\n\r\n", origin.Port)
				tc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if resp, rerr := http.ReadResponse(bufio.NewReader(tc), nil); rerr == nil {
					t.Fatalf("%s certificate: got %d", c.name, resp.StatusCode)
				}
			}
		})
	}
	p.WaitEvent(t, 5*time.Second, func(e Event) bool {
		return e.Str("event.reason") == "auth_failed" && e.Str("egress.auth.method") == "certificate" &&
			strings.Contains(e.Str("error.message"), "revoked")
	})
	m := p.Metrics(t)
	if metricValue(t, p, `egress_auth_total{method="certificate",result="revoked"}`) < 1 ||
		metricValue(t, p, `egress_auth_total{method="certificate",result="failure"}`) < 2 {
		t.Fatalf("certificate refusals not counted:\n%s", m)
	}

	t.Run("crl-reload-ends-a-connected-device", func(t *testing.T) {
		tc, err := proxyTLSDial(t, p, "127.0.0.1", ca, &laptop.Cert)
		if err != nil {
			t.Fatal(err)
		}
		plain := NewOrigin(t, nil, nil)
		br := bufio.NewReader(tc)
		get := func() (int, error) {
			fmt.Fprintf(tc, "GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n", plain.Port, plain.Port)
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		if code, err := get(); err != nil || code != 200 {
			t.Fatalf("before: %d %v", code, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "devices.crl"), []byte(dev.crl(t, revoked.Serial, laptop.Serial)), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, err := get()
			if err != nil {
				t.Fatalf("connection failed before a refusal: %v", err)
			}
			if code == 407 {
				if _, err := get(); err == nil {
					t.Fatal("the connection of a revoked device stayed open")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the revoked device still served: %d", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.WaitEvent(t, 5*time.Second, func(e Event) bool {
			return e.Str("event.reason") == "auth_failed" && e.Str("user.name") == "laptop-bob"
		})
	})
}
