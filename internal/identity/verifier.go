package identity

import "context"

// PasswordVerifier checks a Basic user name and password (htpasswd, LDAP).
// It returns the identity with its groups, or an error wrapping
// ErrBadCredentials or ErrUnavailable. It must honour ctx's deadline.
type PasswordVerifier interface {
	VerifyPassword(ctx context.Context, user, password string) (Identity, error)
}

// NegotiateVerifier checks one SPNEGO token (the base64-decoded value after
// "Negotiate " in Proxy-Authorization). It returns the identity, the response
// token to send back in Proxy-Authenticate (nil when none), or an error
// wrapping ErrBadCredentials or ErrUnavailable.
type NegotiateVerifier interface {
	VerifyNegotiate(ctx context.Context, token []byte) (id Identity, response []byte, err error)
}
