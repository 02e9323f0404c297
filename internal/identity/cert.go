package identity

import (
	"crypto/x509"
	"sort"
)

// Certificate identity fields (proxy.client_cert_user, client_cert_groups).
const (
	CertUserCN       = "cn"        // subject common name (the default)
	CertUserSANEmail = "san_email" // first rfc822Name SAN
	CertUserSANURI   = "san_uri"   // first URI SAN, e.g. spiffe://fleet/device/1234
	CertGroupsOU     = "ou"        // subject organisational units (the default)
	CertGroupsNone   = "none"      // no groups from the certificate
)

// FromCertificate is the identity of a verified client certificate: the user
// from userField, the groups from groupsField (see the Cert* constants). A
// certificate without the chosen field is nobody (Known() false): the caller
// refuses it rather than guessing.
func FromCertificate(c *x509.Certificate, userField, groupsField string) Identity {
	if c == nil {
		return Identity{}
	}
	id := Identity{Method: MethodCertificate}
	switch userField {
	case CertUserSANEmail:
		if len(c.EmailAddresses) > 0 {
			id.User = c.EmailAddresses[0]
		}
	case CertUserSANURI:
		if len(c.URIs) > 0 {
			id.User = c.URIs[0].String()
		}
	default:
		id.User = c.Subject.CommonName
	}
	// A certificate name may hold ':' (a URI) or spaces; never controls.
	if !validGroup(id.User) {
		return Identity{}
	}
	if groupsField != CertGroupsNone {
		id.Groups = sortedUnique(c.Subject.OrganizationalUnit)
	}
	return id
}

// sortedUnique returns the valid names of in, sorted, without duplicates.
func sortedUnique(in []string) []string {
	var out []string
	for _, s := range in {
		if validGroup(s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	j := 0
	for i, s := range out {
		if i == 0 || s != out[j-1] {
			out[j] = s
			j++
		}
	}
	if j == 0 {
		return nil
	}
	return out[:j]
}

// validGroup accepts 1 to 256 bytes without control characters (a group name
// from a certificate or a directory may hold spaces).
func validGroup(g string) bool {
	if g == "" || len(g) > maxUserLen {
		return false
	}
	for i := 0; i < len(g); i++ {
		if c := g[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
