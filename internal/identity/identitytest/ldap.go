package identitytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The LDAP directory's names.
const (
	LDAPBaseDN       = "dc=test,dc=egress"
	LDAPPeopleDN     = "ou=people," + LDAPBaseDN
	LDAPGroupsDN     = "ou=groups," + LDAPBaseDN
	LDAPServiceDN    = "cn=proxy,ou=services," + LDAPBaseDN // the proxy's service account
	LDAPServicePass  = "proxy-service-pw"
	LDAPUserTemplate = "uid={user}," + LDAPPeopleDN
)

// LDAP is a running slapd (mdb backend in a temporary directory) serving
// LDAPBaseDN on 127.0.0.1. Anonymous clients may only bind; searches need
// a bound user (the service account or a user).
type LDAP struct {
	URL    string // ldap://127.0.0.1:port (StartTLS offered)
	LDAPS  string // ldaps://127.0.0.1:port
	CAFile string // the CA of the server's certificate (names localhost and 127.0.0.1)
	Dir    string
	d      *daemon
	port   int
}

// StartLDAP starts slapd with the test users and groups; t.Cleanup kills it.
func StartLDAP(t testing.TB) *LDAP {
	t.Helper()
	need(t, "slapd ldap-utils", "/usr/sbin/slapd", "/usr/sbin/slapadd", "/usr/lib/ldap/back_mdb.so")
	dir := tempDir(t, "egress-slapd-")
	port, tlsPort := freePort(t), freePort(t)
	caFile := serverCert(t, dir)
	conf := filepath.Join(dir, "slapd.conf")
	writeFile(t, conf, fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key

database mdb
maxsize 16777216
directory %[1]s/db
suffix "%[2]s"
rootdn "cn=admin,%[2]s"
rootpw admin-not-used-by-tests

access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by users read
	by * none
`, dir, LDAPBaseDN))
	ldif := fmt.Sprintf(`dn: %[1]s
objectClass: dcObject
objectClass: organization
dc: test
o: egress test

dn: ou=people,%[1]s
objectClass: organizationalUnit
ou: people

dn: ou=groups,%[1]s
objectClass: organizationalUnit
ou: groups

dn: ou=services,%[1]s
objectClass: organizationalUnit
ou: services

dn: %[2]s
objectClass: person
cn: proxy
sn: proxy
userPassword: %[3]s
`, LDAPBaseDN, LDAPServiceDN, LDAPServicePass)
	for _, u := range []string{"alice", "bob", "carol"} {
		ldif += fmt.Sprintf(`
dn: uid=%[1]s,%[2]s
objectClass: inetOrgPerson
uid: %[1]s
cn: %[1]s
sn: %[1]s
userPassword: %[3]s
`, u, LDAPPeopleDN, Passwords[u])
	}
	ldif += fmt.Sprintf(`
dn: cn=communication,%[1]s
objectClass: groupOfNames
cn: communication
member: uid=alice,%[2]s

dn: cn=staff,%[1]s
objectClass: groupOfNames
cn: staff
member: uid=alice,%[2]s
member: uid=bob,%[2]s
`, LDAPGroupsDN, LDAPPeopleDN)
	ldifPath := filepath.Join(dir, "data.ldif")
	writeFile(t, ldifPath, ldif)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "", "/usr/sbin/slapadd", "-f", conf, "-l", ldifPath)
	s := &LDAP{
		URL:    "ldap://127.0.0.1:" + strconv.Itoa(port),
		LDAPS:  "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort),
		CAFile: caFile,
		Dir:    dir,
		port:   port,
		d: &daemon{
			name: "/usr/sbin/slapd",
			// -d 0: stay in the foreground (debug level 0 logs nothing).
			args: []string{"-f", conf, "-h", "ldap://127.0.0.1:" + strconv.Itoa(port) + "/ ldaps://127.0.0.1:" + strconv.Itoa(tlsPort) + "/", "-d", "0"},
			addr: "127.0.0.1:" + strconv.Itoa(port),
			log:  filepath.Join(dir, "slapd.log"),
		},
	}
	if err := s.d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.d.stop() })
	return s
}

// Addr is the host:port slapd listens on.
func (s *LDAP) Addr() string { return s.d.addr }

// Stop kills slapd (an outage); Start brings it back on the same port with the
// same data.
func (s *LDAP) Stop(t testing.TB) {
	t.Helper()
	if err := s.d.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start restarts a stopped slapd.
func (s *LDAP) Start(t testing.TB) {
	t.Helper()
	if err := s.d.start(); err != nil {
		t.Fatal(err)
	}
}
