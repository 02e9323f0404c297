package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Debian's rsyslog (with rsyslog-gnutls) as the SIEM's syslog receiver: egress
// sends RFC 5424 over UDP, TCP (RFC 6587 octet counting) and TLS to a receiver
// whose certificate is signed by a test CA (tls_ca_file, tls_server_name), with
// and without a client certificate (tls_cert_file, tls_key_file). rsyslog
// writes what it parsed with its own RSYSLOG_SyslogProtocol23Format template;
// the test reads that back: app-name, procid, msgid, structured data and one
// complete event per message. rsyslog listens on 127.0.0.1 only, resolves no
// names (net.enableDNS off) and writes only files in the test's directory.

// rsyslogd is the binary, or the test is skipped with the reason (.ci/run
// installs rsyslog and rsyslog-gnutls).
func rsyslogd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("SKIP: rsyslogd not installed (apt-get install rsyslog rsyslog-gnutls; .ci/run does): the real-receiver syslog test did NOT run")
	}
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog", "/usr/lib/rsyslog"} {
		if _, err := os.Stat(filepath.Join(dir, "lmnsd_gtls.so")); err == nil {
			return bin
		}
	}
	t.Skip("SKIP: rsyslog-gnutls not installed (lmnsd_gtls.so): the syslog+tls test against rsyslog did NOT run")
	return ""
}

// testPKI is a CA, a server certificate for "siem.test" and 127.0.0.1, and a
// client certificate, written as PEM files into dir.
type testPKI struct {
	dir                                                  string
	caFile, serverCert, serverKey, clientCert, clientKey string
	otherCA                                              string // a CA that signed nothing here
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	ca := NewCA(t)
	p := &testPKI{dir: dir}
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(name string, eku x509.ExtKeyUsage, dns []string, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			DNSNames: dns, IPAddresses: ips, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			write(name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	}
	p.caFile = write("ca.pem", ca.PEM)
	p.serverCert, p.serverKey = issue("siem.test", x509.ExtKeyUsageServerAuth, []string{"siem.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("egress-client", x509.ExtKeyUsageClientAuth, []string{"egress-client.test"}, nil)
	p.otherCA = write("other-ca.pem", NewCA(t).PEM)
	return p
}

// rsyslogReceiver is one rsyslogd with four loopback inputs, each writing what
// it parsed to its own file.
type rsyslogReceiver struct {
	dir                          string
	udp, tcp, tlsAnon, tlsClient string // 127.0.0.1:port
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func startRsyslog(t *testing.T, bin string, pki *testPKI) *rsyslogReceiver {
	t.Helper()
	dir := t.TempDir()
	r := &rsyslogReceiver{dir: dir}
	udpPort, tcpPort, anonPort, certPort := freeUDPPort(t), freePort(t), freePort(t), freePort(t)
	r.udp = fmt.Sprintf("127.0.0.1:%d", udpPort)
	r.tcp = fmt.Sprintf("127.0.0.1:%d", tcpPort)
	r.tlsAnon = fmt.Sprintf("127.0.0.1:%d", anonPort)
	r.tlsClient = fmt.Sprintf("127.0.0.1:%d", certPort)
	conf := fmt.Sprintf(`global(workDirectory="%[1]s" net.enableDNS="off" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="%[2]s" defaultNetstreamDriverCertFile="%[3]s" defaultNetstreamDriverKeyFile="%[4]s")
module(load="imudp")
module(load="imtcp" maxSessions="100")
input(type="imudp" address="127.0.0.1" port="%[5]d" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="%[6]d" ruleset="tcp" streamDriver.name="ptcp")
input(type="imtcp" address="127.0.0.1" port="%[7]d" ruleset="tlsanon"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="%[8]d" ruleset="tlsclient"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
ruleset(name="udp") { action(type="omfile" file="%[1]s/udp.log" template="RSYSLOG_SyslogProtocol23Format") }
ruleset(name="tcp") { action(type="omfile" file="%[1]s/tcp.log" template="RSYSLOG_SyslogProtocol23Format") }
ruleset(name="tlsanon") { action(type="omfile" file="%[1]s/tlsanon.log" template="RSYSLOG_SyslogProtocol23Format") }
ruleset(name="tlsclient") { action(type="omfile" file="%[1]s/tlsclient.log" template="RSYSLOG_SyslogProtocol23Format") }
`, dir, pki.caFile, pki.serverCert, pki.serverKey, udpPort, tcpPort, anonPort, certPort)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	check := exec.Command(bin, "-N1", "-f", confPath)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 rejects the test config: %v\n%s", err, out)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("rsyslogd output:\n%s", out.String())
		}
	})
	// Ready when the TCP inputs accept (they start with the UDP one).
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range []string{r.tcp, r.tlsAnon, r.tlsClient} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("rsyslogd exited:\n%s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("rsyslogd does not listen on %s:\n%s", a, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return r
}

// rsyslogLine is one line of RSYSLOG_SyslogProtocol23Format:
// "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG".
type rsyslogLine struct {
	pri, timestamp, hostname, app, procid, msgid, sd, msg string
}

// lines reads what rsyslog wrote for an input so far.
func (r *rsyslogReceiver) lines(t *testing.T, input string) []rsyslogLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, input+".log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// Only whole lines: rsyslog may be writing the last one right now (a
	// line without its newline yet is read again at the next poll).
	var out []rsyslogLine
	whole := strings.Split(string(b), "\n")
	for _, line := range whole[:len(whole)-1] {
		p := strings.SplitN(line, " ", 8)
		if len(p) != 8 || !strings.HasPrefix(p[0], "<") || !strings.HasSuffix(p[0], ">1") {
			t.Fatalf("rsyslog %s line is not RFC 5424: %q", input, line)
		}
		out = append(out, rsyslogLine{pri: strings.TrimSuffix(p[0][1:], ">1"), timestamp: p[1], hostname: p[2], app: p[3],
			procid: p[4], msgid: p[5], sd: p[6], msg: strings.TrimPrefix(p[7], " ")})
	}
	return out
}

// wait polls until rsyslog wrote at least n lines for input.
func (r *rsyslogReceiver) wait(t *testing.T, input string, n int, within time.Duration, kick func()) []rsyslogLine {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := r.lines(t, input)
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog %s: %d lines within %v, want %d", input, len(l), within, n)
		}
		if kick != nil {
			kick()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRsyslogLines asserts that rsyslog parsed each message as egress's RFC
// 5424: APP-NAME egress, PROCID the egress pid, MSGID deny, no structured data,
// HOSTNAME the host, and a MSG that is exactly one complete ECS event.
func checkRsyslogLines(t *testing.T, input string, lines []rsyslogLine, pid int) map[string]bool {
	t.Helper()
	host, _ := os.Hostname()
	ids := map[string]bool{}
	for i, l := range lines {
		if l.pri != "132" || l.app != "egress" || l.procid != strconv.Itoa(pid) || l.msgid != "deny" || l.sd != "-" || l.hostname != host {
			t.Errorf("%s line %d: rsyslog parsed %+v; want PRI 132, app-name egress, procid %d, msgid deny, SD -, hostname %s",
				input, i, l, pid, host)
		}
		if _, err := time.Parse(time.RFC3339Nano, l.timestamp); err != nil {
			t.Errorf("%s line %d: timestamp %q: %v", input, i, l.timestamp, err)
		}
		var ev struct {
			Event struct {
				ID     string `json:"id"`
				Action string `json:"action"`
			} `json:"event"`
			Observer struct {
				Hostname string `json:"hostname"`
			} `json:"observer"`
		}
		dec := json.NewDecoder(strings.NewReader(l.msg))
		if err := dec.Decode(&ev); err != nil || dec.More() {
			t.Errorf("%s line %d: MSG is not exactly one JSON event (%v): %q", input, i, err, l.msg)
			continue
		}
		if ev.Event.Action != "deny" || ev.Event.ID == "" || ev.Observer.Hostname != host {
			t.Errorf("%s line %d: event %+v", input, i, ev)
		}
		if ids[ev.Event.ID] {
			t.Errorf("%s: event %s twice", input, ev.Event.ID)
		}
		ids[ev.Event.ID] = true
	}
	return ids
}

// egressTo starts egress with a log block, and returns it.
func egressTo(t *testing.T, logBlock string, files map[string]string) *Proc {
	t.Helper()
	cfg := strings.Replace(baseConfig, `tls { hello_timeout = "2s" }`, `tls { hello_timeout = "2s" }
`+logBlock, 1)
	return Start(t, cfg, files)
}

func pemFiles(t *testing.T, pki *testPKI, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(pki.dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(b)
	}
	return out
}

func TestRsyslogReceivesRFC5424(t *testing.T) {
	bin := rsyslogd(t)
	pki := newTestPKI(t, t.TempDir())
	rs := startRsyslog(t, bin, pki)
	const n = 5
	denies := func(p *Proc, k int) {
		for i := 0; i < k; i++ {
			if code := connectCode(t, p, "www.tiktok.com:443"); code != 403 {
				t.Fatalf("CONNECT www.tiktok.com: %d, want 403", code)
			}
		}
	}

	t.Run("tcp", func(t *testing.T) {
		p := egressTo(t, `log {
  output = "syslog+tcp://`+rs.tcp+`"
}`, nil)
		denies(p, n)
		got := rs.wait(t, "tcp", n, 15*time.Second, nil)
		if len(got) != n {
			t.Errorf("rsyslog tcp: %d messages for %d events", len(got), n)
		}
		checkRsyslogLines(t, "tcp", got, p.cmd.Process.Pid)
	})

	t.Run("udp", func(t *testing.T) {
		p := egressTo(t, `log {
  output = "syslog+udp://`+rs.udp+`"
}`, nil)
		// UDP has no connection: repeat until rsyslog shows one, then count.
		got := rs.wait(t, "udp", 1, 15*time.Second, func() { denies(p, 1) })
		before := len(got)
		denies(p, n)
		got = rs.wait(t, "udp", before+n, 15*time.Second, nil)
		checkRsyslogLines(t, "udp", got, p.cmd.Process.Pid)
	})

	t.Run("tls-private-ca", func(t *testing.T) {
		// The receiver is reached by address; its certificate names siem.test.
		p := egressTo(t, `log {
  output          = "syslog+tls://`+rs.tlsAnon+`"
  tls_ca_file     = "ca.pem"
  tls_server_name = "siem.test"
}`, pemFiles(t, pki, "ca.pem"))
		denies(p, n)
		got := rs.wait(t, "tlsanon", n, 15*time.Second, nil)
		if len(got) != n {
			t.Errorf("rsyslog tls: %d messages for %d events", len(got), n)
		}
		checkRsyslogLines(t, "tlsanon", got, p.cmd.Process.Pid)
	})

	t.Run("tls-client-certificate", func(t *testing.T) {
		p := egressTo(t, `log {
  output          = "syslog+tls://`+rs.tlsClient+`"
  tls_ca_file     = "ca.pem"
  tls_server_name = "siem.test"
  tls_cert_file   = "egress-client.crt"
  tls_key_file    = "egress-client.key"
}`, pemFiles(t, pki, "ca.pem", "egress-client.crt", "egress-client.key"))
		denies(p, n)
		got := rs.wait(t, "tlsclient", n, 15*time.Second, nil)
		if len(got) != n {
			t.Errorf("rsyslog tls with client certificate: %d messages for %d events", len(got), n)
		}
		checkRsyslogLines(t, "tlsclient", got, p.cmd.Process.Pid)
	})

	// The CA file is watched: egress starts with the wrong CA (events refused
	// by egress itself), the file is replaced by the right one, and the reload
	// connects to the receiver with it, without a restart.
	t.Run("tls-ca-file-replaced", func(t *testing.T) {
		p := egressTo(t, `limits { reload_interval = "200ms" }
log {
  output          = "syslog+tls://`+rs.tlsAnon+`"
  tls_ca_file     = "ca.pem"
  tls_server_name = "siem.test"
}`, map[string]string{"ca.pem": pemFiles(t, pki, "other-ca.pem")["other-ca.pem"]})
		before := len(rs.lines(t, "tlsanon"))
		denies(p, 2)
		waitFor(t, 15*time.Second, func() bool {
			return strings.Contains(p.Stderr(), "certificate signed by unknown authority")
		}, "egress to refuse the receiver signed by a CA it does not trust")
		if n := len(rs.lines(t, "tlsanon")); n != before {
			t.Fatalf("rsyslog got %d events from an egress that does not trust it", n-before)
		}
		caPEM, err := os.ReadFile(pki.caFile)
		if err != nil {
			t.Fatal(err)
		}
		// Atomically, as a Secret or ConfigMap update would.
		tmp := filepath.Join(filepath.Dir(p.ConfigPath), ".ca.pem.new")
		if err := os.WriteFile(tmp, caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(filepath.Dir(p.ConfigPath), "ca.pem")); err != nil {
			t.Fatal(err)
		}
		got := rs.wait(t, "tlsanon", before+1, 20*time.Second, func() { denies(p, 1) })
		checkRsyslogLines(t, "tlsanon", got[before:], p.cmd.Process.Pid)
		if !strings.Contains(p.Stderr(), "configuration reloaded") {
			t.Errorf("no reload logged:\n%s", p.Stderr())
		}
	})

	// Refusals: the same receivers must not get events from an egress that
	// does not trust their CA, or that has no client certificate where one is
	// required; egress says why in its process log.
	t.Run("tls-refusals", func(t *testing.T) {
		before := len(rs.lines(t, "tlsanon")) + len(rs.lines(t, "tlsclient"))
		untrusting := egressTo(t, `log {
  output          = "syslog+tls://`+rs.tlsAnon+`"
  tls_ca_file     = "other-ca.pem"
  tls_server_name = "siem.test"
}`, pemFiles(t, pki, "other-ca.pem"))
		noCert := egressTo(t, `log {
  output          = "syslog+tls://`+rs.tlsClient+`"
  tls_ca_file     = "ca.pem"
  tls_server_name = "siem.test"
}`, pemFiles(t, pki, "ca.pem"))
		denies(untrusting, 3)
		denies(noCert, 3)
		// Under TLS 1.3 rsyslog refuses the missing certificate after egress's
		// side of the handshake is done: egress waits for that verdict, so the
		// refusal is a failed connection and the events stay queued.
		waitFor(t, 15*time.Second, func() bool {
			return strings.Contains(untrusting.Stderr(), "certificate signed by unknown authority") &&
				strings.Contains(noCert.Stderr(), "client certificate refused")
		}, "both egress processes to log why the TLS session failed")
		if n := metricValue(t, noCert, "egress_log_events_dropped_total"); n != 0 {
			t.Errorf("%v events dropped by the egress without a client certificate; want them still queued", n)
		}
		t.Logf("without a client certificate, egress logs:\n%s", grepLines(noCert.Stderr(), "syslog"))
		if after := len(rs.lines(t, "tlsanon")) + len(rs.lines(t, "tlsclient")); after != before {
			t.Fatalf("rsyslog accepted %d events over a refused TLS session", after-before)
		}
	})
}
