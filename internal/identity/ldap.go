package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAP checks Basic credentials by binding to a directory as the user, and
// finds a user's groups with a search. It opens one connection per check
// (bounded by ldapMaxConns at a time) and closes it when the check ends:
//
//   - the Authenticator caches successes, so the directory sees one bind per
//     user per cache TTL, not one per request;
//   - a fresh connection has no state to clean (a pooled connection is left
//     bound as the last user, and would have to be rebound and health-checked);
//   - a dead server is noticed by the very check that needs it and a restarted
//     one is used by the next check: nothing to reconnect.
//
// The bound on connections keeps a flood of distinct credentials (which the
// cache cannot absorb) from opening thousands of connections to the
// directory: excess checks wait for a slot until their context ends, then
// fail closed with ErrUnavailable.
type LDAP struct {
	cfg          LDAPConfig
	url          *url.URL
	bindPassword string      // the service account's, read from BindPasswordFile
	tlsConfig    *tls.Config // for ldaps:// and StartTLS
	groupAttr    string
	timeout      time.Duration
	slots        chan struct{} // one token per open connection
}

var _ PasswordVerifier = (*LDAP)(nil)

const (
	// DefaultLDAPTimeout bounds each LDAP operation (dial, bind, search)
	// when the configuration gives none.
	DefaultLDAPTimeout = 5 * time.Second
	ldapMaxConns       = 16
	// ldapMaxGroups: a user in more groups than this is refused (fails
	// closed): a truncated list could miss a group that a deny rule names.
	ldapMaxGroups = 1000
	// ldapMaxUserLen and ldapMaxPasswordLen bound what is sent to the directory.
	ldapMaxUserLen     = 256
	ldapMaxPasswordLen = 1024
)

// NewLDAP checks cfg, reads the service account's password and CA, and
// returns the verifier. It does not contact the server: a directory that is
// down at start-up fails each check (closed), and works once it is back.
func NewLDAP(cfg LDAPConfig) (*LDAP, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("ldap: url %q: want ldap://host:port or ldaps://host:port", cfg.URL)
	}
	if cfg.StartTLS && u.Scheme == "ldaps" {
		return nil, errors.New("ldap: start_tls with an ldaps:// url: choose one")
	}
	switch {
	case cfg.UserDNTemplate != "" && cfg.UserFilter != "":
		return nil, errors.New("ldap: user_dn_template and user_filter are exclusive: bind by template, or search for the user")
	case cfg.UserDNTemplate != "":
		if !strings.Contains(cfg.UserDNTemplate, "{user}") {
			return nil, fmt.Errorf("ldap: user_dn_template %q lacks {user}", cfg.UserDNTemplate)
		}
	case cfg.UserFilter != "":
		if !strings.Contains(cfg.UserFilter, "{user}") {
			return nil, fmt.Errorf("ldap: user_filter %q lacks {user}", cfg.UserFilter)
		}
		if cfg.UserBase == "" {
			return nil, errors.New("ldap: user_filter needs user_base")
		}
		if _, err := ldap.CompileFilter(strings.ReplaceAll(cfg.UserFilter, "{user}", "x")); err != nil {
			return nil, fmt.Errorf("ldap: user_filter %q: %v", cfg.UserFilter, err)
		}
	default:
		return nil, errors.New("ldap: set user_dn_template (bind directly) or user_base and user_filter (search, then bind)")
	}
	l := &LDAP{cfg: cfg, url: u, timeout: cfg.Timeout, groupAttr: cfg.GroupAttribute, slots: make(chan struct{}, ldapMaxConns)}
	if l.timeout <= 0 {
		l.timeout = DefaultLDAPTimeout
	}
	if l.groupAttr == "" {
		l.groupAttr = "cn"
	}
	if cfg.GroupBase != "" {
		if cfg.GroupFilter == "" {
			return nil, errors.New("ldap: group_base needs group_filter, e.g. \"(member={dn})\"")
		}
		f := strings.NewReplacer("{user}", "x", "{dn}", "x").Replace(cfg.GroupFilter)
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, fmt.Errorf("ldap: group_filter %q: %v", cfg.GroupFilter, err)
		}
	}
	if cfg.BindDN != "" {
		if cfg.BindPasswordFile == "" {
			return nil, errors.New("ldap: bind_dn needs bind_password_file")
		}
		b, err := os.ReadFile(cfg.BindPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("ldap: bind_password_file: %v", err)
		}
		l.bindPassword = strings.TrimRight(string(b), "\r\n")
		if l.bindPassword == "" {
			return nil, errors.New("ldap: bind_password_file is empty (an empty password is an anonymous bind)")
		}
	}
	if u.Scheme == "ldaps" || cfg.StartTLS {
		l.tlsConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ldap: ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ldap: ca_file %s: no PEM certificate", cfg.CAFile)
			}
			l.tlsConfig.RootCAs = pool
		}
	}
	return l, nil
}

// VerifyPassword binds as user with password; on success it returns the
// user's identity with the groups the group search finds.
func (l *LDAP) VerifyPassword(ctx context.Context, user, password string) (Identity, error) {
	// An LDAP simple bind with a DN and an empty password is an
	// "unauthenticated bind" that many servers accept: never send one.
	if password == "" {
		return Identity{}, fmt.Errorf("ldap: %w: empty password", ErrBadCredentials)
	}
	if len(password) > ldapMaxPasswordLen {
		return Identity{}, fmt.Errorf("ldap: %w: password longer than %d bytes", ErrBadCredentials, ldapMaxPasswordLen)
	}
	name, err := canonicalUser(user)
	if err != nil {
		return Identity{}, err
	}
	c, err := l.open(ctx)
	if err != nil {
		return Identity{}, err
	}
	defer l.close(c)
	dn, err := l.userDN(c, name)
	if err != nil {
		return Identity{}, err
	}
	if err := c.Bind(dn, password); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return Identity{}, fmt.Errorf("ldap: %w: bind as %s refused", ErrBadCredentials, name)
		}
		return Identity{}, unavailable("bind as user", err)
	}
	// The group search runs as the service account when there is one (users
	// may not be allowed to read groups), else as the user just bound.
	if l.cfg.BindDN != "" && l.cfg.GroupBase != "" {
		if err := l.serviceBind(c); err != nil {
			return Identity{}, err
		}
	}
	groups, err := l.groups(c, name, dn)
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: name, Domain: l.cfg.Domain, Groups: groups, Method: MethodBasic}, nil
}

// Groups returns user's groups (for users identified another way, e.g. by a
// Kerberos ticket), searching as the service account (anonymously when there
// is none). A user the directory does not know has no groups.
func (l *LDAP) Groups(ctx context.Context, user string) ([]string, error) {
	name, err := canonicalUser(user)
	if err != nil {
		return nil, err
	}
	if l.cfg.GroupBase == "" {
		return nil, nil
	}
	c, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	defer l.close(c)
	if l.cfg.BindDN != "" {
		if err := l.serviceBind(c); err != nil {
			return nil, err
		}
	}
	dn, err := l.userDN(c, name)
	if errors.Is(err, ErrBadCredentials) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return l.groups(c, name, dn)
}

// canonicalUser checks a user name and returns the spelling identities
// carry. Directories compare names without case and ignore "insignificant"
// spaces and characters (RFC 4518), so "Bob", " bob" and "bob" bind as the
// same entry: were they passed on as typed, a rule `users = ["bob"]` would
// miss them. Names are therefore restricted to ASCII letters, digits and
// ._@$+- (no spaces, no controls, nothing a filter or DN gives meaning to)
// and lower-cased; anything else is refused before the directory is asked.
func canonicalUser(user string) (string, error) {
	if user == "" || len(user) > ldapMaxUserLen {
		return "", fmt.Errorf("ldap: %w: user name empty or longer than %d bytes", ErrBadCredentials, ldapMaxUserLen)
	}
	for i := 0; i < len(user); i++ {
		b := user[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("._@$+-", b) >= 0
		if !ok {
			return "", fmt.Errorf("ldap: %w: user name has a character outside [A-Za-z0-9._@$+-]", ErrBadCredentials)
		}
	}
	return strings.ToLower(user), nil
}

// open takes a connection slot and dials the server (StartTLS when asked).
// Closing ctx closes the connection, which ends any operation in flight.
func (l *LDAP) open(ctx context.Context) (*ldapConn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("ldap: %w: all %d connections busy: %v", ErrUnavailable, ldapMaxConns, ctx.Err())
	}
	timeout := l.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	dialer := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	var err error
	if l.url.Scheme == "ldaps" {
		td := &tls.Dialer{NetDialer: dialer, Config: l.tlsConfig}
		nc, err = td.DialContext(ctx, "tcp", hostPort(l.url, "636"))
	} else {
		nc, err = dialer.DialContext(ctx, "tcp", hostPort(l.url, "389"))
	}
	if err != nil {
		<-l.slots
		return nil, unavailable("dial", err)
	}
	conn := ldap.NewConn(nc, l.url.Scheme == "ldaps")
	conn.Start()
	conn.SetTimeout(timeout)
	c := &ldapConn{Conn: conn, stop: context.AfterFunc(ctx, func() { conn.Close() })}
	if l.cfg.StartTLS {
		if err := conn.StartTLS(l.tlsConfig); err != nil {
			l.close(c)
			return nil, unavailable("starttls", err)
		}
	}
	return c, nil
}

// ldapConn is one check's connection; close gives its slot back.
type ldapConn struct {
	*ldap.Conn
	stop func() bool // unregisters the close-on-cancel
}

func (l *LDAP) close(c *ldapConn) {
	c.stop()
	c.Conn.Close()
	<-l.slots
}

func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// serviceBind binds as the service account. Its refusal is a configuration
// error, not the user's: it fails closed as ErrUnavailable.
func (l *LDAP) serviceBind(c *ldapConn) error {
	if err := c.Bind(l.cfg.BindDN, l.bindPassword); err != nil {
		return unavailable("bind as bind_dn", err)
	}
	return nil
}

// userDN is the user's DN: from the template, or by a search (as the service
// account, bound here) that must find exactly one entry.
func (l *LDAP) userDN(c *ldapConn, user string) (string, error) {
	if l.cfg.UserDNTemplate != "" {
		return strings.ReplaceAll(l.cfg.UserDNTemplate, "{user}", ldap.EscapeDN(user)), nil
	}
	if l.cfg.BindDN != "" {
		if err := l.serviceBind(c); err != nil {
			return "", err
		}
	}
	req := ldap.NewSearchRequest(l.cfg.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(l.timeout/time.Second), false,
		strings.ReplaceAll(l.cfg.UserFilter, "{user}", ldap.EscapeFilter(user)), []string{"1.1"}, nil)
	res, err := c.Search(req)
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return "", unavailable("user search (user_base does not exist)", err)
		}
		return "", unavailable("user search", err)
	}
	switch {
	case res == nil || len(res.Entries) == 0:
		return "", fmt.Errorf("ldap: %w: no entry for user %s", ErrBadCredentials, user)
	case len(res.Entries) > 1:
		return "", fmt.Errorf("ldap: %w: user %s matches several entries", ErrBadCredentials, user)
	}
	return res.Entries[0].DN, nil
}

// groups runs the group search and returns the names, sorted and unique.
func (l *LDAP) groups(c *ldapConn, user, dn string) ([]string, error) {
	if l.cfg.GroupBase == "" {
		return nil, nil
	}
	filter := strings.NewReplacer("{user}", ldap.EscapeFilter(user), "{dn}", ldap.EscapeFilter(dn)).Replace(l.cfg.GroupFilter)
	req := ldap.NewSearchRequest(l.cfg.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		ldapMaxGroups, int(l.timeout/time.Second), false, filter, []string{l.groupAttr}, nil)
	res, err := c.Search(req)
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return nil, fmt.Errorf("ldap: %w: user %s is in more than %d groups", ErrUnavailable, user, ldapMaxGroups)
		}
		return nil, unavailable("group search", err)
	}
	var out []string
	for _, e := range res.Entries {
		for _, v := range e.GetAttributeValues(l.groupAttr) {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// unavailable wraps an LDAP failure that is not the user's: the check fails
// closed. go-ldap's errors carry result codes and server messages, never the
// bind password.
func unavailable(op string, err error) error {
	return fmt.Errorf("ldap: %w: %s: %v", ErrUnavailable, op, err)
}
