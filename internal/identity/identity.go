// Package identity owns who a client of the explicit proxy is: the
// credentials a request carries (Proxy-Authorization: Basic or Negotiate), the
// sources that verify them (an htpasswd file of bcrypt hashes with a group
// file, LDAP, a Kerberos keytab), the identity in a client certificate, and the
// cache and failure limits around them. It never decides policy: the rules
// package matches users and groups from an Identity, and the proxy answers 407.
//
// Every verifier fails closed: a source that cannot be reached returns an
// error wrapping ErrUnavailable, never an identity. Passwords, tickets and
// tokens never leave this package, not even in errors.
package identity

import "errors"

// Method is how a client was identified; it is the event field
// egress.auth.method.
type Method string

// The methods.
const (
	MethodNone        Method = ""            // not identified
	MethodBasic       Method = "basic"       // Proxy-Authorization: Basic (htpasswd or LDAP)
	MethodNegotiate   Method = "negotiate"   // Proxy-Authorization: Negotiate (Kerberos/SPNEGO)
	MethodCertificate Method = "certificate" // a client certificate on the TLS proxy listener
)

// Identity is who made a request. The zero value is "nobody".
type Identity struct {
	User   string   // user or device name, as the source spells it (without realm)
	Domain string   // Kerberos realm or directory domain; "" when none
	Groups []string // sorted, without duplicates
	Method Method
}

// Known reports whether the identity names someone.
func (id Identity) Known() bool { return id.User != "" }

// The errors a verifier returns (wrapped, with a reason fit for a log line and
// free of any secret).
var (
	// ErrBadCredentials: the credentials were checked and are wrong (unknown
	// user, wrong password, invalid ticket). The proxy answers 407 and records
	// reason auth_failed.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrUnavailable: the source could not check them (LDAP or KDC
	// unreachable, keytab unreadable). The proxy fails closed: 407 (or 503 with
	// an event saying why), never an identity.
	ErrUnavailable = errors.New("identity source unavailable")
)
