package identity

import (
	"encoding/base64"
	"errors"
	"strings"
)

// Bounds on what a Proxy-Authorization value may hold. A Kerberos ticket
// with an Active Directory PAC of a user in many groups reaches a few tens of
// KiB; max_header_bytes bounds the whole header before this.
const (
	MaxBasicLen     = 4096     // base64 text after "Basic "
	MaxNegotiateLen = 64 << 10 // base64 text after "Negotiate "
	maxPasswordLen  = 1024     // decoded password
)

// ErrMalformed: a Proxy-Authorization value that is not one well-formed
// Basic or Negotiate credential. It wraps ErrBadCredentials.
var ErrMalformed = errors.New("malformed Proxy-Authorization")

// Credentials are one parsed Proxy-Authorization value.
type Credentials struct {
	Method   Method // MethodBasic or MethodNegotiate
	User     string // Basic
	Password string // Basic; never logged
	Token    []byte // Negotiate: the decoded SPNEGO token; never logged
}

// ParseProxyAuthorization parses one Proxy-Authorization value (RFC 9110
// §11.6.2, RFC 7617 Basic, RFC 4559 Negotiate), strictly: the scheme
// (case-insensitive), one space (or more), one token68 of standard base64 with
// padding and nothing after it. Basic must decode to "user:password" with a
// valid user name, a password of at most 1024 bytes, no control characters.
// Anything else is ErrMalformed; the error never holds the value.
func ParseProxyAuthorization(v string) (Credentials, error) {
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return Credentials{}, malformed("no credentials after the scheme")
	}
	rest = strings.TrimLeft(rest, " ")
	var method Method
	limit := 0
	switch {
	case strings.EqualFold(scheme, "Basic"):
		method, limit = MethodBasic, MaxBasicLen
	case strings.EqualFold(scheme, "Negotiate"):
		method, limit = MethodNegotiate, MaxNegotiateLen
	default:
		return Credentials{}, malformed("unsupported scheme")
	}
	if rest == "" || len(rest) > limit {
		return Credentials{}, malformed("credentials empty or too long")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil || len(raw) == 0 {
		return Credentials{}, malformed("credentials are not base64")
	}
	if method == MethodNegotiate {
		return Credentials{Method: method, Token: raw}, nil
	}
	user, password, ok := strings.Cut(string(raw), ":")
	if !ok || !validUser(user) {
		return Credentials{}, malformed("Basic credentials need a valid user name and a colon")
	}
	if len(password) > maxPasswordLen || hasControl(password) {
		return Credentials{}, malformed("Basic password too long or with control characters")
	}
	return Credentials{Method: method, User: user, Password: password}, nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

type malformedError string

func (e malformedError) Error() string { return string(ErrMalformed.Error()) + ": " + string(e) }
func (e malformedError) Is(target error) bool {
	return target == ErrMalformed || target == ErrBadCredentials
}

func malformed(why string) error { return malformedError(why) }
