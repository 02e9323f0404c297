package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Identity end-to-end fixtures: a config with the communication exception of
// SPEC §10.2 on a require_auth segment, an htpasswd file and a group file,
// the TLS proxy listener's certificate, and a device CA with a CRL.

// idPasswords are the test users' passwords (alice is in "communication").
var idPasswords = map[string]string{"alice": "alice-Secret-77", "bob": "bob-Secret-88"}

const idGroups = "communication: alice\nstaff: alice bob\n"

// idConfig is the identity config; {{CLIENT_CA}} and {{AUTH_EXTRA}} are
// replaced by the test.
const idConfig = `
proxy {
  listen        = "{{PROXY}}"
  tls_listen    = "{{PROXY_TLS}}"
  tls_cert_file = "proxy.crt"
  tls_key_file  = "proxy.key"
  {{CLIENT_CA}}
}
admin { listen = "{{ADMIN}}" }
tls { hello_timeout = "2s" }
auth {
  htpasswd_file = "users.htpasswd"
  group_file    = "groups.txt"
  realm         = "Ministry proxy"
  max_failures_per_minute = 50
  {{AUTH_EXTRA}}
}
upstream {
  hosts = {
    "allowed.test"   = "127.0.0.1"
    "www.tiktok.com" = "127.0.0.1"
  }
  allow_private = ["127.0.0.1/32"]
}
category "tiktok" { domains = ["tiktok.com"] }
policy "baseline" {
  rule "no-tiktok" {
    action     = "deny"
    categories = ["tiktok"]
  }
}
segment "ministry" {
  sources      = ["127.0.0.0/8"]
  default      = "allow"
  require_auth = true
  rule "institutional-tiktok" {
    action     = "allow"
    groups     = ["communication"]
    categories = ["tiktok"]
  }
  policies = ["baseline"]
}
`

// idFiles returns the files of idConfig: the proxy's certificate from ca, the
// users and groups.
func idFiles(t testing.TB, ca *CA) map[string]string {
	t.Helper()
	leaf := ca.Leaf(t, "proxy.test", "localhost")
	key, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var users strings.Builder
	for u, pw := range idPasswords {
		h, _ := bcrypt.GenerateFromPassword([]byte(pw), 5)
		users.WriteString(u + ":" + string(h) + "\n")
	}
	return map[string]string{
		"proxy.crt":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})),
		"proxy.key":      string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})),
		"users.htpasswd": users.String(),
		"groups.txt":     idGroups,
		"ca.pem":         string(ca.PEM),
	}
}

func idCfg(clientCA, authExtra string) string {
	return strings.NewReplacer("{{CLIENT_CA}}", clientCA, "{{AUTH_EXTRA}}", authExtra).Replace(idConfig)
}

// writeFile writes content to a new file of a temporary folder.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// deviceCA issues client certificates (an MDM's CA) and signs CRLs.
type deviceCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  string
}

func newDeviceCA(t *testing.T, name string) *deviceCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &deviceCA{cert: c, key: key, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// device is an issued client certificate with its PEM files.
type device struct {
	Cert     tls.Certificate
	Serial   *big.Int
	CertFile string
	KeyFile  string
}

// issue makes a client certificate for cn with the OUs as groups, valid from
// notBefore to notAfter.
func (ca *deviceCA) issue(t *testing.T, cn string, ous []string, notBefore, notAfter time.Time) *device {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial := big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ous},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return &device{
		Cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		Serial:   serial,
		CertFile: writeFile(t, cn+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
		KeyFile:  writeFile(t, cn+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))),
	}
}

// crl is a PEM CRL revoking serials.
func (ca *deviceCA) crl(t *testing.T, serials ...*big.Int) string {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// proxyTLSDial opens a TLS connection to the TLS proxy listener from src.
func proxyTLSDial(t *testing.T, p *Proc, src string, ca *CA, cert *tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	c := DialFrom(t, src, p.TLSAddr)
	cfg := &tls.Config{ServerName: "proxy.test", RootCAs: ca.Pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	// TLS 1.3: a refused client certificate shows at the first read.
	tc.SetDeadline(time.Time{})
	return tc, nil
}

var _ net.Conn = (*tls.Conn)(nil)
