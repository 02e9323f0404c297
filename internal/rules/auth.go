package rules

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash"
	"path/filepath"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/identity"
	"github.com/hashicorp/hcl/v2"
)

// ListenerProxyTLS-related defaults (SPEC §10.2).
const (
	DefaultAuthRealm = identity.DefaultRealm
)

// ProxyTLS is the TLS proxy listener (proxy.tls_listen): the explicit proxy
// behind a TLS handshake, optionally requiring client certificates. The
// address applies at start; the certificate, the client CA and the CRL apply
// on reload (the listener reads them from the configuration in force at each
// handshake).
type ProxyTLS struct {
	Listen      string
	Certificate tls.Certificate
	// ClientCAs, when set, requires and verifies a client certificate from
	// these CAs; its identity comes from CertUser and CertGroups.
	ClientCAs  *x509.CertPool
	CertUser   string // identity.CertUser*: "cn" (default), "san_email", "san_uri"
	CertGroups string // identity.CertGroups*: "ou" (default), "none"
	// revoked holds the serial numbers of client_crl_file (hex), checked
	// after the chain is verified.
	revoked map[string]bool
	// Digest changes when any of the files' content does.
	Digest string
}

// Revoked reports whether a verified client certificate is on the CRL.
func (t *ProxyTLS) Revoked(c *x509.Certificate) bool {
	if t == nil || c == nil || c.SerialNumber == nil {
		return false
	}
	return t.revoked[c.SerialNumber.Text(16)]
}

// RequiresClientCert reports whether the TLS listener asks for client
// certificates.
func (t *ProxyTLS) RequiresClientCert() bool { return t != nil && t.ClientCAs != nil }

// AuthSettings is the auth block: the Proxy-Authorization sources and how
// they are offered.
type AuthSettings struct {
	Sources identity.Sources
	// Realm is the realm of the Basic challenge.
	Realm string
	// AllowBasicWithoutTLS offers and accepts Basic on the plain proxy
	// listener too (the password then crosses the network in clear).
	AllowBasicWithoutTLS bool
}

// BasicOn reports whether Basic is offered and accepted on a listener (tls:
// the TLS proxy listener).
func (c *Config) BasicOn(tlsListener bool) bool {
	if c.Auth.Sources.Htpasswd == nil && c.Auth.Sources.LDAP == nil {
		return false
	}
	return tlsListener || c.Auth.AllowBasicWithoutTLS
}

// CanAuthenticate reports whether any client can be identified at all: a
// Negotiate keytab, client certificates on the TLS listener, or Basic on a
// listener that accepts it.
func (c *Config) CanAuthenticate() bool {
	tlsOn := c.Proxy.TLS != nil
	return c.Auth.Sources.Kerberos != nil ||
		c.Proxy.TLS.RequiresClientCert() ||
		c.BasicOn(false) || (tlsOn && c.BasicOn(true))
}

// authFiles reads and checks the proxy block's TLS listener files and the auth
// block (its files resolved against the folder of the file that names them,
// watched for changes, and the user and group files hashed into the config
// version: they change decisions).
func (l *loader) authFiles(cfg *Config, root *rawRoot, version hash.Hash) hcl.Diagnostics {
	var diags hcl.Diagnostics
	diags = append(diags, singleton("auth", root.Auth, func(b *rawAuth) hcl.Range { return b.DefRange })...)
	if len(root.Proxy) > 0 {
		diags = append(diags, l.proxyTLS(cfg, root.Proxy[0])...)
	}
	cfg.Auth.Realm = DefaultAuthRealm
	cfg.Auth.Sources.CacheTTL = identity.DefaultCacheTTL
	cfg.Auth.Sources.MaxFailures = identity.DefaultMaxFailures
	if len(root.Auth) == 0 {
		return diags
	}
	b := root.Auth[0]
	errAt := func(body hcl.Body, def hcl.Range, attr, summary, format string, args ...any) {
		diags = append(diags, errorAt(attrRange(body, attr, def), summary, format, args...))
	}
	read := func(body hcl.Body, def hcl.Range, attr string, p *string) (string, []byte) {
		return l.attrFile(body, def, attr, p, "Cannot read file", &diags)
	}
	ck := &settingsChecker{}
	ck.duration(b.CacheTTL, b.Body, "cache_ttl", b.DefRange, &cfg.Auth.Sources.CacheTTL)
	if v := b.MaxFailuresPerMinute; v != nil {
		if *v < 1 || *v > 1<<20 {
			errAt(b.Body, b.DefRange, "max_failures_per_minute", "Invalid number",
				"max_failures_per_minute = %d: must be between 1 and %d.", *v, 1<<20)
		} else {
			cfg.Auth.Sources.MaxFailures = *v
		}
	}
	diags = append(diags, ck.diags...)
	if b.Realm != nil {
		if *b.Realm == "" || strings.ContainsAny(*b.Realm, "\"\\\r\n") || len(*b.Realm) > 128 {
			errAt(b.Body, b.DefRange, "realm", "Invalid realm", "realm = %q: write a short name without quotes or backslashes, e.g. \"Ministry proxy\".", *b.Realm)
		} else {
			cfg.Auth.Realm = *b.Realm
		}
	}
	if b.AllowBasicWithoutTLS != nil {
		cfg.Auth.AllowBasicWithoutTLS = *b.AllowBasicWithoutTLS
	}
	var groups *identity.Groups
	if name, data := read(b.Body, b.DefRange, "group_file", b.GroupFile); data != nil {
		g, err := identity.ParseGroups(data)
		if err != nil {
			errAt(b.Body, b.DefRange, "group_file", "Invalid group file", "%s: %v. Write one \"group: user1 user2\" per line.", name, err)
		}
		groups = g
		fmt.Fprintf(version, "groups\x00%s\x00%d\x00", filepath.Base(name), len(data))
		version.Write(data)
	}
	if name, data := read(b.Body, b.DefRange, "htpasswd_file", b.HtpasswdFile); data != nil {
		h, err := identity.ParseHtpasswd(data)
		if err != nil {
			errAt(b.Body, b.DefRange, "htpasswd_file", "Invalid htpasswd file", "%s: %v.", name, err)
		} else {
			cfg.Auth.Sources.Htpasswd = h.WithGroups(groups)
		}
		fmt.Fprintf(version, "htpasswd\x00%s\x00%d\x00", filepath.Base(name), len(data))
		version.Write(data)
	}
	if b.GroupFile != nil && b.HtpasswdFile == nil {
		errAt(b.Body, b.DefRange, "group_file", "group_file without htpasswd_file",
			"group_file gives groups to the users of htpasswd_file; add htpasswd_file, or take groups from LDAP.")
	}
	diags = append(diags, singleton("ldap", b.LDAP, func(x *rawLDAP) hcl.Range { return x.DefRange })...)
	diags = append(diags, singleton("kerberos", b.Kerberos, func(x *rawKerberos) hcl.Range { return x.DefRange })...)
	if len(b.LDAP) > 0 {
		x := b.LDAP[0]
		lc := &identity.LDAPConfig{URL: x.URL}
		if !strings.HasPrefix(x.URL, "ldap://") && !strings.HasPrefix(x.URL, "ldaps://") {
			errAt(x.Body, x.DefRange, "url", "Invalid LDAP URL", "url = %q: write ldap://host:port (with start_tls = true) or ldaps://host:port.", x.URL)
		}
		str := func(p *string, out *string) {
			if p != nil {
				*out = *p
			}
		}
		if x.StartTLS != nil {
			lc.StartTLS = *x.StartTLS
		}
		lc.CAFile, _ = read(x.Body, x.DefRange, "ca_file", x.CAFile)
		lc.BindPasswordFile, _ = read(x.Body, x.DefRange, "bind_password_file", x.BindPasswordFile)
		str(x.UserDNTemplate, &lc.UserDNTemplate)
		str(x.BindDN, &lc.BindDN)
		str(x.UserBase, &lc.UserBase)
		str(x.UserFilter, &lc.UserFilter)
		str(x.GroupBase, &lc.GroupBase)
		str(x.GroupFilter, &lc.GroupFilter)
		str(x.GroupAttribute, &lc.GroupAttribute)
		str(x.Domain, &lc.Domain)
		var ck settingsChecker
		ck.duration(x.Timeout, x.Body, "timeout", x.DefRange, &lc.Timeout)
		diags = append(diags, ck.diags...)
		if lc.UserDNTemplate == "" && (lc.UserBase == "" || lc.UserFilter == "") {
			diags = append(diags, errorAt(&x.DefRange, "LDAP block cannot find users",
				"Set user_dn_template (e.g. \"uid={user},ou=people,dc=example,dc=org\"), or user_base and user_filter (e.g. \"(uid={user})\") to search for the user's entry."))
		}
		if lc.BindDN != "" && lc.BindPasswordFile == "" && x.BindPasswordFile == nil {
			errAt(x.Body, x.DefRange, "bind_dn", "bind_dn without bind_password_file", "The service account %q needs its password in bind_password_file.", lc.BindDN)
		}
		cfg.Auth.Sources.LDAP = lc
	}
	if len(b.Kerberos) > 0 {
		x := b.Kerberos[0]
		kc := &identity.KerberosConfig{}
		if x.ServicePrincipal != nil {
			kc.ServicePrincipal = *x.ServicePrincipal
		}
		if x.GroupsFromLDAP != nil {
			kc.GroupsFromLDAP = *x.GroupsFromLDAP
			if kc.GroupsFromLDAP && len(b.LDAP) == 0 {
				errAt(x.Body, x.DefRange, "groups_from_ldap", "groups_from_ldap without an ldap block",
					"Kerberos users' groups come from the ldap block's group search; add an ldap block (auth { ldap { ... } }).")
			}
		}
		var ck settingsChecker
		ck.duration(x.ClockSkew, x.Body, "clock_skew", x.DefRange, &kc.ClockSkew)
		diags = append(diags, ck.diags...)
		if kc.ClockSkew > time.Hour {
			errAt(x.Body, x.DefRange, "clock_skew", "clock_skew too large",
				"clock_skew = %s: an authenticator this old can be replayed for that long; use minutes (MIT's default is 5m).", kc.ClockSkew)
		}
		for i, r := range x.ClientRealms {
			if r == "" || strings.ContainsAny(r, " \t\\\"@") {
				diags = append(diags, errorAt(elemRange(x.Body, "client_realms", i, x.DefRange), "Invalid realm",
					"%q: a Kerberos realm name, e.g. \"CORP.EXAMPLE\".", r))
				continue
			}
			kc.ClientRealms = append(kc.ClientRealms, r)
		}
		kt := x.Keytab
		kc.Keytab, _ = read(x.Body, x.DefRange, "keytab", &kt)
		cfg.Auth.Sources.Kerberos = kc
	}
	return diags
}

// proxyTLS reads the TLS proxy listener's files.
func (l *loader) proxyTLS(cfg *Config, b *rawProxy) hcl.Diagnostics {
	var diags hcl.Diagnostics
	errAt := func(attr, summary, format string, args ...any) {
		diags = append(diags, errorAt(attrRange(b.Body, attr, b.DefRange), summary, format, args...))
	}
	on := b.TLSListen != nil && *b.TLSListen != ""
	if !on {
		for _, attr := range []string{"tls_cert_file", "tls_key_file", "client_ca_file", "client_crl_file", "client_cert_user", "client_cert_groups"} {
			if hasAttr(b.Body, attr) {
				errAt(attr, "TLS listener setting without tls_listen",
					"%s applies to the TLS proxy listener; set tls_listen (e.g. \"0.0.0.0:3129\") or remove it.", attr)
			}
		}
		return diags
	}
	t := &ProxyTLS{CertUser: identity.CertUserCN, CertGroups: identity.CertGroupsOU}
	ck := &settingsChecker{}
	ck.listen(b.TLSListen, b.Body, "tls_listen", b.DefRange, &t.Listen)
	diags = append(diags, ck.diags...)
	if t.Listen != "" && t.Listen == cfg.Proxy.Listen {
		errAt("tls_listen", "Listener address used twice", "tls_listen = %q is also proxy.listen; give the TLS listener its own port.", t.Listen)
	}
	digest := sha256.New()
	read := func(attr string, p *string) (string, []byte) {
		full, data := l.attrFile(b.Body, b.DefRange, attr, p, "Cannot read TLS file", &diags)
		if full != "" {
			digest.Write([]byte(attr + "\x00"))
			digest.Write(data)
		}
		return full, data
	}
	if b.TLSCertFile == nil || b.TLSKeyFile == nil {
		diags = append(diags, errorAt(attrRange(b.Body, "tls_listen", b.DefRange), "TLS listener without a certificate",
			"tls_listen needs tls_cert_file and tls_key_file: the certificate (with its chain) clients see for the proxy, and its key."))
	}
	certName, certPEM := read("tls_cert_file", b.TLSCertFile)
	_, keyPEM := read("tls_key_file", b.TLSKeyFile)
	if certPEM != nil && keyPEM != nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			errAt("tls_cert_file", "Invalid proxy certificate", "%s: %v.", certName, err)
		} else {
			t.Certificate = c
		}
	}
	var cas []*x509.Certificate
	if name, data := read("client_ca_file", b.ClientCAFile); data != nil {
		cas = parseCerts(data)
		if len(cas) == 0 {
			errAt("client_ca_file", "Invalid CA file", "%s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\").", name)
		} else {
			t.ClientCAs = x509.NewCertPool()
			for _, c := range cas {
				t.ClientCAs.AddCert(c)
			}
		}
	}
	if name, data := read("client_crl_file", b.ClientCRLFile); data != nil {
		switch {
		case b.ClientCAFile == nil:
			errAt("client_crl_file", "client_crl_file without client_ca_file", "A CRL revokes client certificates; set client_ca_file to require them.")
		default:
			t.revoked, diags = checkCRL(name, data, cas, l, b, diags)
		}
	}
	if v := b.ClientCertUser; v != nil {
		switch *v {
		case identity.CertUserCN, identity.CertUserSANEmail, identity.CertUserSANURI:
			t.CertUser = *v
		default:
			errAt("client_cert_user", "Invalid certificate field", "client_cert_user = %q: use \"cn\" (subject common name), \"san_email\" or \"san_uri\".", *v)
		}
	}
	if v := b.ClientCertGroups; v != nil {
		switch *v {
		case identity.CertGroupsOU, identity.CertGroupsNone:
			t.CertGroups = *v
		default:
			errAt("client_cert_groups", "Invalid certificate field", "client_cert_groups = %q: use \"ou\" (subject organisational units) or \"none\".", *v)
		}
	}
	if (b.ClientCertUser != nil || b.ClientCertGroups != nil) && b.ClientCAFile == nil {
		errAt("client_ca_file", "Certificate identity without client_ca_file", "client_cert_user and client_cert_groups read client certificates; set client_ca_file.")
	}
	t.Digest = hex.EncodeToString(digest.Sum(nil))
	if !diags.HasErrors() {
		cfg.Proxy.TLS = t
	}
	return diags
}

// checkCRL parses a PEM or DER CRL, checks it is signed by one of the client
// CAs, and returns its revoked serial numbers. An outdated CRL (past its
// NextUpdate) is still enforced, with a warning.
func checkCRL(name string, data []byte, cas []*x509.Certificate, l *loader, b *rawProxy, diags hcl.Diagnostics) (map[string]bool, hcl.Diagnostics) {
	rng := attrRange(b.Body, "client_crl_file", b.DefRange)
	der := data
	if p, _ := pem.Decode(data); p != nil {
		der = p.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, append(diags, errorAt(rng, "Invalid CRL", "%s: %v. Give a PEM (\"-----BEGIN X509 CRL-----\") or DER CRL.", name, err))
	}
	signed := false
	for _, ca := range cas {
		if crl.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return nil, append(diags, errorAt(rng, "CRL not signed by the client CA", "%s is not signed by a certificate of client_ca_file.", name))
	}
	if !crl.NextUpdate.IsZero() && l.now().After(crl.NextUpdate) {
		diags = append(diags, warningAt(rng, "Outdated CRL", "%s was due for an update on %s; it is still enforced. Publish a fresh CRL.", name, crl.NextUpdate.UTC().Format(time.RFC3339)))
	}
	out := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			out[e.SerialNumber.Text(16)] = true
		}
	}
	return out, diags
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var p *pem.Block
		p, data = pem.Decode(data)
		if p == nil {
			return out
		}
		if p.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(p.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
