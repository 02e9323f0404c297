package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestParseProxyAuthorization(t *testing.T) {
	long := strings.Repeat("A", MaxNegotiateLen+4)
	for _, c := range []struct {
		name, in string
		want     Credentials
		ok       bool
	}{
		{"basic", basic("alice", "s3cret:with:colons"), Credentials{Method: MethodBasic, User: "alice", Password: "s3cret:with:colons"}, true},
		{"basic scheme any case", "bAsIc " + base64.StdEncoding.EncodeToString([]byte("a:b")), Credentials{Method: MethodBasic, User: "a", Password: "b"}, true},
		{"empty password", basic("alice", ""), Credentials{Method: MethodBasic, User: "alice"}, true},
		{"negotiate", "Negotiate " + base64.StdEncoding.EncodeToString([]byte{0x60, 1, 2}), Credentials{Method: MethodNegotiate, Token: []byte{0x60, 1, 2}}, true},
		{"no scheme", "Basic", Credentials{}, false},
		{"unknown scheme", "Bearer abc", Credentials{}, false},
		{"NTLM", "NTLM TlRMTVNTUAABAAAA", Credentials{}, false},
		{"not base64", "Basic !!!", Credentials{}, false},
		{"unpadded", "Basic YTpi", Credentials{Method: MethodBasic, User: "a", Password: "b"}, true},
		{"trailing junk", basic("a", "b") + " x", Credentials{}, false},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), Credentials{}, false},
		{"empty user", basic("", "pw"), Credentials{}, false},
		{"user with space", basic("a b", "pw"), Credentials{}, false},
		{"control in password", basic("a", "p\nw"), Credentials{}, false},
		{"too long negotiate", "Negotiate " + long, Credentials{}, false},
		{"too long basic", "Basic " + strings.Repeat("A", MaxBasicLen+4), Credentials{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProxyAuthorization(c.in)
			if (err == nil) != c.ok {
				t.Fatalf("err %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("error %v is not ErrMalformed and ErrBadCredentials", err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatal("error holds the secret")
				}
				return
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v want %+v", got, c.want)
			}
		})
	}
}

// FuzzParseProxyAuthorization: any value parses or fails cleanly; what parses
// respects the bounds, and a Basic credential re-encodes to an equivalent one.
func FuzzParseProxyAuthorization(f *testing.F) {
	for _, s := range []string{basic("alice", "pw"), "Negotiate YIIBgwYGKwYBBQUCoIIBdzCCAXOgMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCqKCAT0EggE5",
		"Basic", "Basic ", "Basic ====", "Negotiate", "basic YTpi", "Basic  YTpi", "Digest username=\"a\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseProxyAuthorization(v)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		switch c.Method {
		case MethodBasic:
			if !validUser(c.User) || len(c.Password) > maxPasswordLen || hasControl(c.Password) || c.Token != nil {
				t.Fatalf("%+v", c)
			}
			again, err := ParseProxyAuthorization(basic(c.User, c.Password))
			if err != nil || again.User != c.User || again.Password != c.Password {
				t.Fatalf("round trip %+v %v", again, err)
			}
		case MethodNegotiate:
			if len(c.Token) == 0 || len(c.Token) > MaxNegotiateLen || c.User != "" {
				t.Fatalf("%+v", c)
			}
		default:
			t.Fatalf("method %q", c.Method)
		}
	})
}

func htpasswd(t testing.TB, users ...string) *Htpasswd {
	t.Helper()
	var b strings.Builder
	b.WriteString("# users\n\n")
	for _, u := range users {
		h, _ := bcrypt.GenerateFromPassword([]byte("pw-"+u), bcrypt.MinCost)
		b.WriteString(u + ":" + string(h) + "\n")
	}
	h, err := ParseHtpasswd([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGroups([]byte("# groups\ncommunication: alice\nstaff: alice bob\nstaff: carol\n"))
	if err != nil {
		t.Fatal(err)
	}
	return h.WithGroups(g)
}

func TestHtpasswd(t *testing.T) {
	h := htpasswd(t, "alice", "bob")
	id, err := h.VerifyPassword(context.Background(), "alice", "pw-alice")
	if err != nil || id.User != "alice" || !reflect.DeepEqual(id.Groups, []string{"communication", "staff"}) || id.Method != MethodBasic {
		t.Fatalf("%+v %v", id, err)
	}
	for _, c := range [][2]string{{"alice", "pw-bob"}, {"nobody", "pw-alice"}, {"alice", ""}} {
		if _, err := h.VerifyPassword(context.Background(), c[0], c[1]); !errors.Is(err, ErrBadCredentials) || strings.Contains(err.Error(), c[1]+"x") {
			t.Errorf("%v: %v", c, err)
		}
	}
	for _, bad := range []string{"alice", ":hash", "a b:$2y$05$x", "alice:$apr1$x$y"} {
		if _, err := ParseHtpasswd([]byte(bad)); !errors.Is(err, ErrFileFormat) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	h2, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	if _, err := ParseHtpasswd([]byte("a:" + string(h2) + "\na:" + string(h2))); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("duplicate: %v", err)
	}
}

// counting wraps a verifier and counts its calls.
type counting struct {
	PasswordVerifier
	n   atomic.Int32
	err error
}

func (c *counting) VerifyPassword(ctx context.Context, u, p string) (Identity, error) {
	c.n.Add(1)
	if c.err != nil {
		return Identity{}, c.err
	}
	return c.PasswordVerifier.VerifyPassword(ctx, u, p)
}

func TestAuthenticatorCacheAndLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	v := &counting{PasswordVerifier: htpasswd(t, "alice")}
	lim := NewFailureLimiter(clock)
	a := NewAuthenticator(Options{Password: []PasswordVerifier{v}, CacheTTL: time.Minute, Limiter: lim, MaxFailures: 3, Now: clock})
	src, other := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	ok := Credentials{Method: MethodBasic, User: "alice", Password: "pw-alice"}
	for i := 0; i < 3; i++ {
		if id, _, err := a.Authenticate(context.Background(), src, ok, true); err != nil || id.User != "alice" {
			t.Fatalf("%+v %v", id, err)
		}
	}
	if n := v.n.Load(); n != 1 {
		t.Fatalf("verifier called %d times, want 1 (cached)", n)
	}
	// The cache holds no password: not as a key, not as a value.
	for k, e := range a.cache {
		if strings.Contains(string(k[:]), "pw-alice") || strings.Contains(e.id.User+strings.Join(e.id.Groups, ""), "pw-") {
			t.Fatal("password in the cache")
		}
	}
	// Basic refused where it is not allowed, without a check.
	if _, _, err := a.Authenticate(context.Background(), src, ok, false); !errors.Is(err, ErrNotOffered) {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute) // expired
	a.Authenticate(context.Background(), src, ok, true)
	if n := v.n.Load(); n != 2 {
		t.Fatalf("verifier called %d times after the TTL, want 2", n)
	}
	bad := Credentials{Method: MethodBasic, User: "alice", Password: "wrong"}
	for i := 0; i < 3; i++ {
		if _, _, err := a.Authenticate(context.Background(), src, bad, true); !errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrRateLimited) {
			t.Fatalf("%d: %v", i, err)
		}
	}
	calls := v.n.Load()
	// Limited now, even with the right password; another source is not.
	if _, _, err := a.Authenticate(context.Background(), src, ok, true); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("want rate limited, got %v", err)
	}
	if v.n.Load() != calls {
		t.Fatal("a rate-limited request reached the verifier")
	}
	if _, _, err := a.Authenticate(context.Background(), other, ok, true); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := a.Authenticate(context.Background(), src, ok, true); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// An unavailable source fails closed and is not the client's failure.
	down := &counting{PasswordVerifier: htpasswd(t), err: errors.Join(errors.New("ldap: dial refused"), ErrUnavailable)}
	b := NewAuthenticator(Options{Password: []PasswordVerifier{down}, Limiter: lim, MaxFailures: 1, Now: clock})
	for i := 0; i < 3; i++ {
		if id, _, err := b.Authenticate(context.Background(), other, bad, true); !errors.Is(err, ErrUnavailable) || id.Known() {
			t.Fatalf("%+v %v", id, err)
		}
	}
	// htpasswd first, then an unavailable LDAP: a local user still works.
	c := NewAuthenticator(Options{Password: []PasswordVerifier{htpasswd(t, "alice"), down}, Now: clock})
	if _, _, err := c.Authenticate(context.Background(), src, ok, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Authenticate(context.Background(), src, bad, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown to htpasswd, LDAP down: %v", err)
	}
	// Negotiate without a verifier is not offered.
	if _, _, err := c.Authenticate(context.Background(), src, Credentials{Method: MethodNegotiate, Token: []byte{1}}, true); !errors.Is(err, ErrNotOffered) {
		t.Fatal(err)
	}
}

func TestFromCertificate(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://fleet.example/device/42")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "phone-42",
		OrganizationalUnit: []string{"staff", "communication", "staff"}},
		EmailAddresses: []string{"alice@ministry.example"}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	c, _ := x509.ParseCertificate(der)
	for _, tc := range []struct{ user, groups, wantUser string }{
		{CertUserCN, CertGroupsOU, "phone-42"},
		{CertUserSANEmail, CertGroupsOU, "alice@ministry.example"},
		{CertUserSANURI, CertGroupsNone, "spiffe://fleet.example/device/42"},
	} {
		id := FromCertificate(c, tc.user, tc.groups)
		if id.User != tc.wantUser || id.Method != MethodCertificate {
			t.Errorf("%s: %+v", tc.user, id)
		}
		want := []string{"communication", "staff"}
		if tc.groups == CertGroupsNone {
			want = nil
		}
		if !reflect.DeepEqual(id.Groups, want) {
			t.Errorf("%s: groups %v", tc.groups, id.Groups)
		}
	}
	tmpl.Subject.CommonName = ""
	der, _ = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	c, _ = x509.ParseCertificate(der)
	if id := FromCertificate(c, CertUserCN, CertGroupsOU); id.Known() {
		t.Errorf("no CN: %+v", id)
	}
}

// A flood of password checks waits for a slot within its deadline, then
// fails closed (unavailable), never open.
func TestHtpasswdBusy(t *testing.T) {
	h := htpasswd(t, "alice")
	for i := 0; i < cap(h.busy); i++ {
		h.busy <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if id, err := h.VerifyPassword(ctx, "alice", "pw-alice"); !errors.Is(err, ErrUnavailable) || id.Known() {
		t.Fatalf("%+v %v", id, err)
	}
	<-h.busy
	if _, err := h.VerifyPassword(context.Background(), "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
}
