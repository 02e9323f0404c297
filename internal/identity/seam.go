package identity

import "fmt"

// The seam where the LDAP and Kerberos verifiers (ldap*.go, kerberos*.go,
// written on the h/idext branch: NewLDAP, NewKerberos) plug into Build. On a
// branch without them, a config that names them fails closed: every Basic
// check that reaches LDAP and every Negotiate token is ErrUnavailable.

func openLDAP(c LDAPConfig) (PasswordVerifier, error) {
	return nil, fmt.Errorf("ldap %s: LDAP support is not built into this binary", c.URL)
}

func openKerberos(c KerberosConfig, groups PasswordVerifier) (NegotiateVerifier, error) {
	return nil, fmt.Errorf("kerberos %s: Kerberos support is not built into this binary", c.Keytab)
}
