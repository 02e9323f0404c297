package rules

import "github.com/hashicorp/hcl/v2"

// The raw HCL model, decoded with gohcl. Every block keeps its body so that
// checks after decoding can point at the attribute (or list element) at fault.

type rawRoot struct {
	Proxy       []*rawProxy       `hcl:"proxy,block"`
	Transparent []*rawTransparent `hcl:"transparent,block"`
	Admin       []*rawAdmin       `hcl:"admin,block"`
	TLS         []*rawTLS         `hcl:"tls,block"`
	Upstream    []*rawUpstream    `hcl:"upstream,block"`
	Log         []*rawLog         `hcl:"log,block"`
	Limits      []*rawLimits      `hcl:"limits,block"`
	Categories  []*rawCategory    `hcl:"category,block"`
	Policies    []*rawPolicy      `hcl:"policy,block"`
	Segments    []*rawSegment     `hcl:"segment,block"`
	Tests       []*rawTest        `hcl:"test,block"`
	Auth        []*rawAuth        `hcl:"auth,block"`
}

type rawProxy struct {
	Listen            *string  `hcl:"listen,optional"`
	ProxyProtocol     *bool    `hcl:"proxy_protocol,optional"`
	ProxyProtocolFrom []string `hcl:"proxy_protocol_from,optional"`
	// The TLS proxy listener and client certificates (SPEC §10.2, auth.go).
	TLSListen        *string   `hcl:"tls_listen,optional"`
	TLSCertFile      *string   `hcl:"tls_cert_file,optional"`
	TLSKeyFile       *string   `hcl:"tls_key_file,optional"`
	ClientCAFile     *string   `hcl:"client_ca_file,optional"`
	ClientCRLFile    *string   `hcl:"client_crl_file,optional"`
	ClientCertUser   *string   `hcl:"client_cert_user,optional"`
	ClientCertGroups *string   `hcl:"client_cert_groups,optional"`
	Body             hcl.Body  `hcl:",body"`
	DefRange         hcl.Range `hcl:",def_range"`
}

type rawTransparent struct {
	HTTPSListen       *string   `hcl:"https_listen,optional"`
	HTTPListen        *string   `hcl:"http_listen,optional"`
	HTTPSPort         *int      `hcl:"https_port,optional"`
	HTTPPort          *int      `hcl:"http_port,optional"`
	QUICListen        *string   `hcl:"quic_listen,optional"`
	QUICPort          *int      `hcl:"quic_port,optional"`
	ProxyProtocol     *bool     `hcl:"proxy_protocol,optional"`
	ProxyProtocolFrom []string  `hcl:"proxy_protocol_from,optional"`
	Body              hcl.Body  `hcl:",body"`
	DefRange          hcl.Range `hcl:",def_range"`
}

type rawAdmin struct {
	Listen         *string   `hcl:"listen,optional"`
	PACProxy       *string   `hcl:"pac_proxy,optional"`
	DirectDomains  []string  `hcl:"pac_direct_domains,optional"`
	DirectNetworks []string  `hcl:"pac_direct_networks,optional"`
	Pprof          *bool     `hcl:"pprof,optional"`
	Body           hcl.Body  `hcl:",body"`
	DefRange       hcl.Range `hcl:",def_range"`
}

type rawTLS struct {
	HelloTimeout *string   `hcl:"hello_timeout,optional"`
	SNIMismatch  *string   `hcl:"sni_mismatch,optional"`
	MissingSNI   *string   `hcl:"missing_sni,optional"`
	NonTLS       *string   `hcl:"non_tls,optional"`
	ECH          *string   `hcl:"ech,optional"`
	Body         hcl.Body  `hcl:",body"`
	DefRange     hcl.Range `hcl:",def_range"`
}

type rawUpstream struct {
	DialTimeout   *string           `hcl:"dial_timeout,optional"`
	Hosts         map[string]string `hcl:"hosts,optional"`
	AllowPrivate  []string          `hcl:"allow_private,optional"`
	DNSServers    []string          `hcl:"dns_servers,optional"`
	DNSCacheSize  *int              `hcl:"dns_cache_size,optional"`
	DNSMaxTTL     *string           `hcl:"dns_max_ttl,optional"`
	DNSServeStale *string           `hcl:"dns_serve_stale,optional"`
	Body          hcl.Body          `hcl:",body"`
	DefRange      hcl.Range         `hcl:",def_range"`
}

type rawLog struct {
	Format        *string   `hcl:"format,optional"`
	Output        *string   `hcl:"output,optional"`
	Queue         *int      `hcl:"queue_size,optional"`
	LegacyFields  *bool     `hcl:"legacy_fields,optional"`
	TLSCAFile     *string   `hcl:"tls_ca_file,optional"`
	TLSServerName *string   `hcl:"tls_server_name,optional"`
	TLSCertFile   *string   `hcl:"tls_cert_file,optional"`
	TLSKeyFile    *string   `hcl:"tls_key_file,optional"`
	Body          hcl.Body  `hcl:",body"`
	DefRange      hcl.Range `hcl:",def_range"`
}

type rawLimits struct {
	MaxConnections  *int      `hcl:"max_connections,optional"`
	PerSource       *int      `hcl:"per_source,optional"`
	IdleTimeout     *string   `hcl:"idle_timeout,optional"`
	ShutdownGrace   *string   `hcl:"shutdown_grace,optional"`
	ReloadInterval  *string   `hcl:"reload_interval,optional"`
	EnforceOnReload *bool     `hcl:"enforce_on_reload,optional"`
	HeaderTimeout   *string   `hcl:"header_timeout,optional"`
	MaxHeaderBytes  *int      `hcl:"max_header_bytes,optional"`
	Body            hcl.Body  `hcl:",body"`
	DefRange        hcl.Range `hcl:",def_range"`
}

type rawCategory struct {
	Name        string   `hcl:"name,label"`
	Description *string  `hcl:"description,optional"`
	Domains     []string `hcl:"domains,optional"`
	Files       []string `hcl:"files,optional"`
	// Feeds is a list of objects, read by compileFeeds.
	Feeds    hcl.Expression `hcl:"feeds,optional"`
	Body     hcl.Body       `hcl:",body"`
	DefRange hcl.Range      `hcl:",def_range"`
}

type rawPolicy struct {
	Name        string     `hcl:"name,label"`
	Description *string    `hcl:"description,optional"`
	Rules       []*rawRule `hcl:"rule,block"`
	DefRange    hcl.Range  `hcl:",def_range"`
}

type rawSegment struct {
	Name        string     `hcl:"name,label"`
	Description *string    `hcl:"description,optional"`
	Sources     []string   `hcl:"sources"`
	Default     string     `hcl:"default"`
	Policies    []string   `hcl:"policies,optional"`
	RequireAuth *bool      `hcl:"require_auth,optional"`
	Rules       []*rawRule `hcl:"rule,block"`
	Body        hcl.Body   `hcl:",body"`
	DefRange    hcl.Range  `hcl:",def_range"`
}

type rawRule struct {
	Name        string    `hcl:"name,label"`
	Action      string    `hcl:"action"`
	Monitor     *bool     `hcl:"monitor,optional"`
	Description *string   `hcl:"description,optional"`
	Domains     []string  `hcl:"domains,optional"`
	Categories  []string  `hcl:"categories,optional"`
	CIDRs       []string  `hcl:"cidrs,optional"`
	Ports       []int     `hcl:"ports,optional"`
	Users       []string  `hcl:"users,optional"`
	Groups      []string  `hcl:"groups,optional"`
	Owner       *string   `hcl:"owner,optional"`
	Ticket      *string   `hcl:"ticket,optional"`
	Expires     *string   `hcl:"expires,optional"`
	Body        hcl.Body  `hcl:",body"`
	DefRange    hcl.Range `hcl:",def_range"`
}

type rawTest struct {
	Name     string    `hcl:"name,label"`
	Source   string    `hcl:"source"`
	Host     string    `hcl:"host"`
	SNI      *string   `hcl:"sni,optional"`
	Port     *int      `hcl:"port,optional"`
	Expect   string    `hcl:"expect"`
	Rule     *string   `hcl:"rule,optional"`
	Reason   *string   `hcl:"reason,optional"`
	User     *string   `hcl:"user,optional"`
	Groups   []string  `hcl:"groups,optional"`
	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

// rawAuth is the auth block (SPEC §10.2, auth.go).
type rawAuth struct {
	HtpasswdFile         *string        `hcl:"htpasswd_file,optional"`
	GroupFile            *string        `hcl:"group_file,optional"`
	Realm                *string        `hcl:"realm,optional"`
	CacheTTL             *string        `hcl:"cache_ttl,optional"`
	MaxFailuresPerMinute *int           `hcl:"max_failures_per_minute,optional"`
	AllowBasicWithoutTLS *bool          `hcl:"allow_basic_without_tls,optional"`
	LDAP                 []*rawLDAP     `hcl:"ldap,block"`
	Kerberos             []*rawKerberos `hcl:"kerberos,block"`
	Body                 hcl.Body       `hcl:",body"`
	DefRange             hcl.Range      `hcl:",def_range"`
}

type rawLDAP struct {
	URL              string    `hcl:"url"`
	StartTLS         *bool     `hcl:"start_tls,optional"`
	CAFile           *string   `hcl:"ca_file,optional"`
	UserDNTemplate   *string   `hcl:"user_dn_template,optional"`
	BindDN           *string   `hcl:"bind_dn,optional"`
	BindPasswordFile *string   `hcl:"bind_password_file,optional"`
	UserBase         *string   `hcl:"user_base,optional"`
	UserFilter       *string   `hcl:"user_filter,optional"`
	GroupBase        *string   `hcl:"group_base,optional"`
	GroupFilter      *string   `hcl:"group_filter,optional"`
	GroupAttribute   *string   `hcl:"group_attribute,optional"`
	Domain           *string   `hcl:"domain,optional"`
	Timeout          *string   `hcl:"timeout,optional"`
	Body             hcl.Body  `hcl:",body"`
	DefRange         hcl.Range `hcl:",def_range"`
}

type rawKerberos struct {
	Keytab           string    `hcl:"keytab"`
	ServicePrincipal *string   `hcl:"service_principal,optional"`
	GroupsFromLDAP   *bool     `hcl:"groups_from_ldap,optional"`
	ClockSkew        *string   `hcl:"clock_skew,optional"`
	ClientRealms     []string  `hcl:"client_realms,optional"`
	Body             hcl.Body  `hcl:",body"`
	DefRange         hcl.Range `hcl:",def_range"`
}
