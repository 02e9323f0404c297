package rules

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// logTLSFiles resolves, reads and checks the log block's tls_ca_file,
// tls_cert_file and tls_key_file (SPEC §10.5): relative paths are relative to
// the folder of the file holding the log block, like list files; the files are
// watched for changes like every file the config reads; a CA file must hold at
// least one PEM certificate, a certificate and its key must be given together
// and match. The settings apply to a syslog+tls output only.
func (l *loader) logTLSFiles(cfg *Config, root *rawRoot) hcl.Diagnostics {
	if len(root.Log) == 0 {
		return nil
	}
	b := root.Log[0]
	var diags hcl.Diagnostics
	errAt := func(attr, summary, format string, args ...any) {
		diags = append(diags, errorAt(attrRange(b.Body, attr, b.DefRange), summary, format, args...))
	}
	isTLS := strings.HasPrefix(cfg.Log.Output, "syslog+tls://")
	digest := sha256.New()
	read := func(attr string, p *string) (string, []byte) {
		if p == nil {
			return "", nil
		}
		if !isTLS {
			errAt(attr, "TLS setting without a TLS output",
				"%s applies to output = \"syslog+tls://host:port\" only; the output is %q.", attr, cfg.Log.Output)
			return "", nil
		}
		full, data := l.attrFile(b.Body, b.DefRange, attr, p, "Cannot read TLS file", &diags)
		if full != "" {
			digest.Write([]byte(attr + "\x00"))
			digest.Write(data)
		}
		return full, data
	}
	ca, caPEM := read("tls_ca_file", b.TLSCAFile)
	cert, certPEM := read("tls_cert_file", b.TLSCertFile)
	key, keyPEM := read("tls_key_file", b.TLSKeyFile)
	if b.TLSServerName != nil && !isTLS {
		errAt("tls_server_name", "TLS setting without a TLS output",
			"tls_server_name applies to output = \"syslog+tls://host:port\" only; the output is %q.", cfg.Log.Output)
	}
	if caPEM != nil {
		if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
			errAt("tls_ca_file", "Invalid CA file", "%s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\").", ca)
		}
	}
	switch {
	case (b.TLSCertFile == nil) != (b.TLSKeyFile == nil):
		missing := "tls_key_file"
		if b.TLSCertFile == nil {
			missing = "tls_cert_file"
		}
		diags = append(diags, errorAt(&b.DefRange, "Incomplete client certificate",
			"A client certificate needs both tls_cert_file and tls_key_file; %s is missing.", missing))
	case certPEM != nil && keyPEM != nil:
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			errAt("tls_cert_file", "Invalid client certificate", "%s with key %s: %v.", cert, key, err)
		}
	}
	if diags.HasErrors() {
		return diags
	}
	cfg.Log.TLSCAFile, cfg.Log.TLSCertFile, cfg.Log.TLSKeyFile = ca, cert, key
	if ca != "" || cert != "" {
		cfg.Log.TLSDigest = hex.EncodeToString(digest.Sum(nil))
	}
	return nil
}

// attrFile reads the file a block's attribute names. The path is relative to
// the folder of the file holding the block (def), like list files, and the
// file is watched for changes like every file the config reads. A nil path is
// an unset attribute ("", nil); an empty path or an unreadable file is an
// error in diags at the attribute, summarised as cannotRead.
func (l *loader) attrFile(body hcl.Body, def hcl.Range, attr string, p *string, cannotRead string, diags *hcl.Diagnostics) (string, []byte) {
	if p == nil {
		return "", nil
	}
	if *p == "" {
		*diags = append(*diags, errorAt(attrRange(body, attr, def), "Empty path",
			"%s needs a file path; remove the attribute to leave it unset.", attr))
		return "", nil
	}
	full := l.join(l.dir(def.Filename), *p)
	data, err := l.readFile(full)
	if err != nil {
		*diags = append(*diags, errorAt(attrRange(body, attr, def), cannotRead,
			"%s (resolved to %s): %v. Paths are relative to the folder of the file that names them.", *p, full, unwrapPathError(err)))
		return "", nil
	}
	l.files = append(l.files, full)
	return full, data
}
