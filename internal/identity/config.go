package identity

import "time"

// LDAPConfig is a compiled `auth { ldap { ... } }` block (the rules package
// decodes and checks the HCL; paths are already resolved). Basic credentials
// are checked by binding as the user: by UserDNTemplate directly, or by a
// search as BindDN for the user's entry first. Groups come from a search.
// In the templates, {user} is the escaped user name and {dn} the user's DN.
type LDAPConfig struct {
	URL              string        // ldap://host:port or ldaps://host:port
	StartTLS         bool          // upgrade ldap:// with StartTLS
	CAFile           string        // trust this CA for ldaps/StartTLS; system roots when ""
	UserDNTemplate   string        // e.g. "uid={user},ou=people,dc=example,dc=org"; or use the search below
	BindDN           string        // service account for the user and group searches; anonymous when ""
	BindPasswordFile string        // its password, in a file (never in the config)
	UserBase         string        // search base for the user's entry
	UserFilter       string        // e.g. "(uid={user})" or "(sAMAccountName={user})"
	GroupBase        string        // search base for groups; no groups when ""
	GroupFilter      string        // e.g. "(member={dn})" or "(memberUid={user})"
	GroupAttribute   string        // the group name attribute, e.g. "cn"
	Domain           string        // user.domain for identities from this directory; "" for none
	Timeout          time.Duration // per operation (dial, bind, search); the proxy's default when 0
}

// KerberosConfig is a compiled `auth { kerberos { ... } }` block.
type KerberosConfig struct {
	Keytab           string // service keytab (HTTP/proxy.fqdn@REALM)
	ServicePrincipal string // the principal to accept; any in the keytab when ""
	// Groups come from the ticket's PAC when it has one (Active Directory);
	// otherwise, or when GroupsFromLDAP is set, from the LDAP block's group
	// search (which must then exist).
	GroupsFromLDAP bool
	// ClockSkew is the largest accepted difference between the client's
	// clock and the proxy's (authenticator time, ticket start and end);
	// DefaultClockSkew (5 minutes, as MIT's clockskew) when 0.
	ClockSkew time.Duration
	// ClientRealms are the realms whose users are accepted besides the
	// service's own (cross-realm trust). Users of other realms are refused:
	// rules match user names without their realm, so alice@OTHER must not
	// pass for alice@OURS.
	ClientRealms []string
}
