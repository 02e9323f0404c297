package identity

import (
	"context"
	"net/netip"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkAuthenticateBasic: one Basic check through the Authenticator, from
// the cache (an HMAC-SHA256 and a map lookup) and without it (bcrypt at the
// cost htpasswd -B uses by default, 10 here for speed of the run; each +1
// doubles it).
func BenchmarkAuthenticateBasic(b *testing.B) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), 10)
	ht, err := ParseHtpasswd([]byte("alice:" + string(h) + "\n"))
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.1")
	c := Credentials{Method: MethodBasic, User: "alice", Password: "pw"}
	for _, tc := range []struct {
		name string
		ttl  int
	}{{"cached", 1}, {"uncached-bcrypt-10", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			o := Options{Password: []PasswordVerifier{ht}}
			if tc.ttl < 0 {
				o.CacheTTL = -1
			}
			a := NewAuthenticator(o)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := a.Authenticate(context.Background(), src, c, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
