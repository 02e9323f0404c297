package identitytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Kerberos realm's names.
const (
	Realm = "TEST.EGRESS"
	// ServicePrincipal is the proxy's principal. Clients name the proxy
	// "localhost" (curl --proxy http://localhost:PORT), so the service is
	// HTTP/localhost: no /etc/hosts entry and no DNS is needed
	// (krb5.conf: rdns = false, dns_canonicalize_hostname = false).
	ServicePrincipal = "HTTP/localhost"
	// OtherPrincipal is a service whose tickets egress must refuse.
	OtherPrincipal = "HTTP/other.test"
)

// KDC is a running MIT krb5kdc for Realm on 127.0.0.1 (TCP and UDP on the same
// port), with the database, configuration and keytabs in Dir.
type KDC struct {
	Dir         string
	Port        int
	Krb5Conf    string // the client configuration (KRB5_CONFIG)
	Keytab      string // ServicePrincipal's keys: the proxy's keytab
	OtherKeytab string // OtherPrincipal's keys
	env         []string
	d           *daemon
}

// StartKDC creates the realm (users alice, bob, carol with the passwords of
// this package; HTTP/localhost and HTTP/other.test with random keys) and
// starts the KDC; t.Cleanup kills it.
func StartKDC(t testing.TB) *KDC {
	t.Helper()
	need(t, "krb5-kdc krb5-admin-server", "/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local")
	dir := tempDir(t, "egress-kdc-")
	port := freePort(t)
	k := &KDC{
		Dir:         dir,
		Port:        port,
		Krb5Conf:    filepath.Join(dir, "krb5.conf"),
		Keytab:      filepath.Join(dir, "proxy.keytab"),
		OtherKeytab: filepath.Join(dir, "other.keytab"),
	}
	kdcConf := filepath.Join(dir, "kdc.conf")
	writeFile(t, k.Krb5Conf, fmt.Sprintf(`[libdefaults]
	default_realm = %[1]s
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
	udp_preference_limit = 1
	default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
	default_tgs_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
	permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
	ticket_lifetime = 1h
	noaddresses = true

[realms]
	%[1]s = {
		kdc = 127.0.0.1:%[2]d
	}
`, Realm, port))
	writeFile(t, kdcConf, fmt.Sprintf(`[kdcdefaults]
	kdc_ports = %[2]d
	kdc_tcp_ports = %[2]d

[realms]
	%[1]s = {
		database_name = %[3]s/principal
		key_stash_file = %[3]s/stash
		acl_file = %[3]s/kadm5.acl
		kdc_listen = 127.0.0.1:%[2]d
		kdc_tcp_listen = 127.0.0.1:%[2]d
		max_life = 1h
		supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
	}

[logging]
	kdc = FILE:%[3]s/kdc.log
`, Realm, port, dir))
	writeFile(t, filepath.Join(dir, "kadm5.acl"), "")
	k.env = []string{"KRB5_CONFIG=" + k.Krb5Conf, "KRB5_KDC_PROFILE=" + kdcConf}
	run(t, k.env, "", "/usr/sbin/kdb5_util", "create", "-s", "-r", Realm, "-P", "master-not-used-by-tests")
	kadmin := func(q string) { run(t, k.env, "", "/usr/sbin/kadmin.local", "-r", Realm, "-q", q) }
	for _, u := range []string{"alice", "bob", "carol"} {
		kadmin("addprinc -pw " + Passwords[u] + " " + u)
	}
	kadmin("addprinc -randkey " + ServicePrincipal)
	kadmin("ktadd -k " + k.Keytab + " " + ServicePrincipal)
	kadmin("addprinc -randkey " + OtherPrincipal)
	kadmin("ktadd -k " + k.OtherKeytab + " " + OtherPrincipal)
	k.d = &daemon{
		name: "/usr/sbin/krb5kdc",
		env:  k.env,
		args: []string{"-n", "-r", Realm, "-P", filepath.Join(dir, "kdc.pid")},
		addr: "127.0.0.1:" + strconv.Itoa(port),
		log:  filepath.Join(dir, "krb5kdc.out"),
	}
	if err := k.d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.d.stop() })
	return k
}

// Env is the environment a Kerberos client of this realm needs (KRB5_CONFIG).
func (k *KDC) Env() []string { return []string{"KRB5_CONFIG=" + k.Krb5Conf} }

// Kinit gets user's TGT with its password into a fresh credential cache and
// returns the cache's name for KRB5CCNAME. It needs kinit (krb5-user).
func (k *KDC) Kinit(t testing.TB, user string) string {
	t.Helper()
	need(t, "krb5-user", "/usr/bin/kinit")
	cc := "FILE:" + filepath.Join(k.Dir, "cc-"+user+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/kinit", user+"@"+Realm)
	cmd.Env = append(os.Environ(), "KRB5_CONFIG="+k.Krb5Conf, "KRB5CCNAME="+cc)
	cmd.Stdin = strings.NewReader(Passwords[user] + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit %s: %v\n%s", user, err, out)
	}
	return cc
}

// Stop kills the KDC (an outage); Start brings it back on the same port.
func (k *KDC) Stop(t testing.TB) {
	t.Helper()
	if err := k.d.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start restarts a stopped KDC.
func (k *KDC) Start(t testing.TB) {
	t.Helper()
	if err := k.d.start(); err != nil {
		t.Fatal(err)
	}
}
