package identity

import (
	"context"
	"fmt"
	"time"
)

// Sources is what a config's auth block compiles to (the rules package fills
// it; files are already read and checked).
type Sources struct {
	Htpasswd    *Htpasswd // with its group file's groups; nil when none
	LDAP        *LDAPConfig
	Kerberos    *KerberosConfig
	CacheTTL    time.Duration
	MaxFailures int
}

// Empty reports whether no Proxy-Authorization source is configured.
func (s *Sources) Empty() bool {
	return s == nil || s.Htpasswd == nil && s.LDAP == nil && s.Kerberos == nil
}

// Build makes the Authenticator of s. A source that cannot be built (an
// unreadable keytab, a bad LDAP URL) is replaced by one that answers
// ErrUnavailable, so that requests fail closed; the errors are returned for
// the log. It returns nil when s configures no source.
func Build(s *Sources, limiter *FailureLimiter) (*Authenticator, []error) {
	if s.Empty() {
		return nil, nil
	}
	var errs []error
	o := Options{CacheTTL: s.CacheTTL, Limiter: limiter, MaxFailures: s.MaxFailures}
	if s.Htpasswd != nil {
		o.Password = append(o.Password, s.Htpasswd)
	}
	var ldap PasswordVerifier
	if s.LDAP != nil {
		v, err := openLDAP(*s.LDAP)
		if err != nil {
			errs = append(errs, err)
			v = failing{err}
		}
		ldap = v
		o.Password = append(o.Password, v)
	}
	if s.Kerberos != nil {
		v, err := openKerberos(*s.Kerberos, ldap)
		if err != nil {
			errs = append(errs, err)
			v = failing{err}
		}
		o.Negotiate = v
	}
	return NewAuthenticator(o), errs
}

// failing stands in for a source that could not be built: it fails closed.
type failing struct{ err error }

func (f failing) VerifyPassword(context.Context, string, string) (Identity, error) {
	return Identity{}, fmt.Errorf("%v: %w", f.err, ErrUnavailable)
}

func (f failing) VerifyNegotiate(context.Context, []byte) (Identity, []byte, error) {
	return Identity{}, nil, fmt.Errorf("%v: %w", f.err, ErrUnavailable)
}
