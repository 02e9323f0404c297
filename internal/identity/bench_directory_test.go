package identity

import (
	"context"
	"testing"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// BenchmarkVerifyNegotiate: one SPNEGO token checked with the keytab (ticket
// and authenticator decryption, replay cache), no group lookup. The tokens
// are made before the timer starts, each with a fresh authenticator.
func BenchmarkVerifyNegotiate(b *testing.B) {
	k := identitytest.StartKDC(b)
	kv, err := NewKerberos(KerberosConfig{Keytab: k.Keytab, ServicePrincipal: identitytest.ServicePrincipal}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cl := krbClient(b, k, "alice")
	tokens := make([][]byte, b.N)
	for i := range tokens {
		tokens[i] = negotiateToken(b, cl, identitytest.ServicePrincipal)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := kv.VerifyNegotiate(ctx, tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLDAPVerifyPassword: one uncached Basic check against a local slapd
// (connect, service bind, user search, user bind, group search, close).
func BenchmarkLDAPVerifyPassword(b *testing.B) {
	s := identitytest.StartLDAP(b)
	l, err := NewLDAP(ldapConfigsTB(b, s)["search"])
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.VerifyPassword(ctx, "alice", identitytest.AlicePassword); err != nil {
			b.Fatal(err)
		}
	}
}
