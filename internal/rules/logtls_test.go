package rules

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate and its key as PEM files.
func writeKeyPair(t *testing.T, dir, name string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	must(t, os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func loadIn(t *testing.T, dir, src string) (*Config, error) {
	t.Helper()
	p := filepath.Join(dir, "egress.hcl")
	must(t, os.WriteFile(p, []byte(src), 0o644))
	cfg, diags := Load(p, Options{})
	return cfg, DiagnosticsError(diags)
}

func TestLogTLSFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "pki"), 0o755))
	writeKeyPair(t, filepath.Join(dir, "pki"), "ca")
	writeKeyPair(t, filepath.Join(dir, "pki"), "client")
	writeKeyPair(t, filepath.Join(dir, "pki"), "other")
	const seg = "\nsegment \"s\" {\n  sources = [\"127.0.0.1/32\"]\n  default = \"allow\"\n}\n"

	cfg, err := loadIn(t, dir, `log {
  output          = "syslog+tls://127.0.0.1:6514"
  legacy_fields   = true
  tls_ca_file     = "pki/ca.crt"
  tls_server_name = "siem.example"
  tls_cert_file   = "pki/client.crt"
  tls_key_file    = "pki/client.key"
}`+seg)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Log
	if l.TLSCAFile != filepath.Join(dir, "pki", "ca.crt") || l.TLSCertFile != filepath.Join(dir, "pki", "client.crt") ||
		l.TLSKeyFile != filepath.Join(dir, "pki", "client.key") || l.TLSServerName != "siem.example" || !l.LegacyFields || l.TLSDigest == "" {
		t.Fatalf("log settings %+v", l)
	}
	for _, f := range []string{l.TLSCAFile, l.TLSCertFile, l.TLSKeyFile} {
		found := false
		for _, w := range cfg.Files {
			found = found || w == f
		}
		if !found {
			t.Errorf("%s is not watched (cfg.Files %v)", f, cfg.Files)
		}
	}
	// A rotated certificate changes the settings, so a reload swaps the logger.
	before := cfg.Log
	writeKeyPair(t, filepath.Join(dir, "pki"), "client")
	cfg2, err := loadIn(t, dir, `log {
  output          = "syslog+tls://127.0.0.1:6514"
  legacy_fields   = true
  tls_ca_file     = "pki/ca.crt"
  tls_server_name = "siem.example"
  tls_cert_file   = "pki/client.crt"
  tls_key_file    = "pki/client.key"
}`+seg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.Log == before {
		t.Fatal("rotating the client certificate left LogSettings equal: the reload would keep the old logger")
	}

	for name, tc := range map[string]struct{ block, want string }{
		"ca_file without tls output": {`output = "syslog+tcp://127.0.0.1:514"
  tls_ca_file = "pki/ca.crt"`, "applies to output = \"syslog+tls://host:port\" only"},
		"server name without tls output": {`tls_server_name = "x.example"`, "applies to output"},
		"missing CA":                     {`output = "syslog+tls://127.0.0.1:1"` + "\n" + `tls_ca_file = "pki/none.crt"`, "Cannot read TLS file"},
		"CA not PEM":                     {`output = "syslog+tls://127.0.0.1:1"` + "\n" + `tls_ca_file = "egress.hcl"`, "holds no PEM certificate"},
		"cert without key":               {`output = "syslog+tls://127.0.0.1:1"` + "\n" + `tls_cert_file = "pki/client.crt"`, "tls_key_file is missing"},
		"key without cert":               {`output = "syslog+tls://127.0.0.1:1"` + "\n" + `tls_key_file = "pki/client.key"`, "tls_cert_file is missing"},
		"key of another cert": {`output = "syslog+tls://127.0.0.1:1"
  tls_cert_file = "pki/client.crt"
  tls_key_file = "pki/other.key"`, "Invalid client certificate"},
		"bad server name": {`output = "syslog+tls://127.0.0.1:1"
  tls_server_name = "siem.example:6514"`, "Invalid TLS server name"},
		"unknown attribute": {`ca_file = "pki/ca.crt"`, "Unsupported argument"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadIn(t, dir, "log {\n  "+tc.block+"\n}\n"+seg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error shows key material: %v", err)
			}
		})
	}
	if _, err := loadIn(t, dir, "log {\n  output = \"syslog+tls://[::1]:6514\"\n  tls_server_name = \"::1\"\n}\n"+seg); err != nil {
		t.Fatalf("an IPv6 server name: %v", err)
	}
}
