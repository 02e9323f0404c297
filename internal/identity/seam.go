package identity

import "errors"

// The seam where the LDAP and Kerberos verifiers (ldap.go, kerberos.go) plug
// into Build.

func openLDAP(c LDAPConfig) (PasswordVerifier, error) {
	l, err := NewLDAP(c)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// openKerberos gets the LDAP source Build made (nil when none). When that
// source could not be built, Kerberos users' groups cannot be looked up:
// Kerberos fails closed too rather than identify users without their groups.
func openKerberos(c KerberosConfig, groups PasswordVerifier) (NegotiateVerifier, error) {
	var l *LDAP
	if groups != nil {
		var ok bool
		if l, ok = groups.(*LDAP); !ok {
			return nil, errors.New("kerberos: the ldap block that gives users their groups is unusable")
		}
	}
	k, err := NewKerberos(c, l)
	if err != nil {
		return nil, err
	}
	return k, nil
}
