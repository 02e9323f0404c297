package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// krbClient logs user in to the test KDC with its password (gokrb5's client).
func krbClient(t testing.TB, k *identitytest.KDC, user string) *client.Client {
	t.Helper()
	cfg, err := config.Load(k.Krb5Conf)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword(user, identitytest.Realm, identitytest.Passwords[user], cfg, client.DisablePAFXFAST(true))
	if err := cl.Login(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(cl.Destroy)
	return cl
}

// negotiateToken is a fresh SPNEGO token (new authenticator) for spn.
func negotiateToken(t testing.TB, cl *client.Client, spn string) []byte {
	t.Helper()
	ct, err := spnego.SPNEGOClient(cl, spn).InitSecContext()
	if err != nil {
		t.Fatalf("token for %s: %v", spn, err)
	}
	b, err := ct.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKerberosVerifyNegotiate(t *testing.T) {
	k := identitytest.StartKDC(t)
	s := identitytest.StartLDAP(t)
	ldapCfg := ldapConfigs(t, s)["search"]
	dir, err := NewLDAP(ldapCfg)
	if err != nil {
		t.Fatal(err)
	}
	alice := krbClient(t, k, "alice")
	ctx := context.Background()

	t.Run("groups from ldap", func(t *testing.T) {
		kv, err := NewKerberos(KerberosConfig{Keytab: k.Keytab, ServicePrincipal: identitytest.ServicePrincipal}, dir)
		if err != nil {
			t.Fatal(err)
		}
		id, resp, err := kv.VerifyNegotiate(ctx, negotiateToken(t, alice, identitytest.ServicePrincipal))
		if err != nil {
			t.Fatal(err)
		}
		want := Identity{User: "alice", Domain: identitytest.Realm, Groups: []string{"communication", "staff"}, Method: MethodNegotiate}
		if id.User != want.User || id.Domain != want.Domain || id.Method != want.Method || !slices.Equal(id.Groups, want.Groups) || resp != nil {
			t.Errorf("got %+v, %x; want %+v", id, resp, want)
		}
	})

	// Any principal of the keytab when none is configured; no groups
	// without a directory.
	kv, err := NewKerberos(KerberosConfig{Keytab: k.Keytab}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no directory", func(t *testing.T) {
		id, _, err := kv.VerifyNegotiate(ctx, negotiateToken(t, krbClient(t, k, "carol"), identitytest.ServicePrincipal))
		if err != nil || id.User != "carol" || len(id.Groups) != 0 {
			t.Fatalf("got %+v, %v", id, err)
		}
	})

	t.Run("replay", func(t *testing.T) {
		tok := negotiateToken(t, alice, identitytest.ServicePrincipal)
		if _, _, err := kv.VerifyNegotiate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if id, _, err := kv.VerifyNegotiate(ctx, tok); !errors.Is(err, ErrBadCredentials) || id.Known() {
			t.Fatalf("replayed token: %+v, %v; want ErrBadCredentials", id, err)
		}
		// A captured token sent many times at once passes at most once
		// (gokrb5's own cache checks and inserts in two steps).
		tok = negotiateToken(t, alice, identitytest.ServicePrincipal)
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := kv.VerifyNegotiate(ctx, tok); err == nil {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Errorf("one token sent 16 times at once accepted %d times; want 1", ok.Load())
		}
	})

	t.Run("ticket for another service", func(t *testing.T) {
		tok := negotiateToken(t, alice, identitytest.OtherPrincipal)
		if id, _, err := kv.VerifyNegotiate(ctx, tok); !errors.Is(err, ErrBadCredentials) || id.Known() {
			t.Fatalf("got %+v, %v; want ErrBadCredentials", id, err)
		}
		// Nor with a keytab holding both keys but configured for ours.
		both := filepath.Join(t.TempDir(), "both.keytab")
		mergeKeytabs(t, both, k.Keytab, k.OtherKeytab)
		only, err := NewKerberos(KerberosConfig{Keytab: both, ServicePrincipal: identitytest.ServicePrincipal}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id, _, err := only.VerifyNegotiate(ctx, negotiateToken(t, alice, identitytest.OtherPrincipal)); !errors.Is(err, ErrBadCredentials) || id.Known() {
			t.Fatalf("ticket for %s with service_principal %s: %+v, %v", identitytest.OtherPrincipal, identitytest.ServicePrincipal, id, err)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		tok := negotiateToken(t, alice, identitytest.ServicePrincipal)
		ntlmInit := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
			MechTypes:      []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}},
			MechTokenBytes: []byte("NTLMSSP\x00\x01\x00\x00\x00\x97\x82\x08\xe2"),
		}}
		ntlm, err := ntlmInit.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{
			"empty":     {},
			"one byte":  {0x60},
			"text":      []byte("Negotiate dGVzdA=="),
			"truncated": tok[:len(tok)/2],
			"flipped":   flip(tok, len(tok)-20),
			"ntlm":      ntlm,
			"huge":      make([]byte, maxNegotiateToken+1),
		} {
			if id, _, err := kv.VerifyNegotiate(ctx, b); !errors.Is(err, ErrBadCredentials) || id.Known() {
				t.Errorf("%s: got %+v, %v; want ErrBadCredentials", name, id, err)
			}
		}
	})

	// The acceptor never talks to the KDC: tickets obtained before an
	// outage stay valid (until they expire); clients without a ticket send
	// none, which the proxy answers with 407 (the end-to-end test).
	t.Run("kdc down", func(t *testing.T) {
		bob := krbClient(t, k, "bob")
		// The service ticket is fetched (and cached by the client) before
		// the outage.
		if _, _, err := kv.VerifyNegotiate(ctx, negotiateToken(t, bob, identitytest.ServicePrincipal)); err != nil {
			t.Fatal(err)
		}
		k.Stop(t)
		defer k.Start(t)
		if id, _, err := kv.VerifyNegotiate(ctx, negotiateToken(t, bob, identitytest.ServicePrincipal)); err != nil || id.User != "bob" {
			t.Fatalf("ticket from before the outage: %+v, %v", id, err)
		}
		cfg, _ := config.Load(k.Krb5Conf)
		cl := client.NewWithPassword("carol", identitytest.Realm, identitytest.CarolPassword, cfg, client.DisablePAFXFAST(true))
		if err := cl.Login(); err == nil {
			t.Fatal("login succeeded with the KDC stopped")
		}
	})

	t.Run("ldap down", func(t *testing.T) {
		kv, err := NewKerberos(KerberosConfig{Keytab: k.Keytab, GroupsFromLDAP: true}, dir)
		if err != nil {
			t.Fatal(err)
		}
		s.Stop(t)
		id, _, err := kv.VerifyNegotiate(ctx, negotiateToken(t, alice, identitytest.ServicePrincipal))
		if !errors.Is(err, ErrUnavailable) || id.Known() {
			t.Fatalf("groups unavailable: %+v, %v; want ErrUnavailable", id, err)
		}
		s.Start(t)
		if id, _, err = kv.VerifyNegotiate(ctx, negotiateToken(t, alice, identitytest.ServicePrincipal)); err != nil || len(id.Groups) != 2 {
			t.Fatalf("after restart: %+v, %v", id, err)
		}
	})
}

func flip(b []byte, i int) []byte {
	c := slices.Clone(b)
	c[i] ^= 0x55
	return c
}

// mergeKeytabs writes the entries of the keytabs in srcs into dst.
func mergeKeytabs(t testing.TB, dst string, srcs ...string) {
	t.Helper()
	out := keytab.New()
	for _, src := range srcs {
		kt, err := keytab.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		out.Entries = append(out.Entries, kt.Entries...)
	}
	b, err := out.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewKerberosRefuses(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.keytab")
	os.WriteFile(garbage, []byte("not a keytab"), 0o600)
	unreadable := filepath.Join(dir, "unreadable.keytab")
	os.WriteFile(unreadable, nil, 0o000)
	good := filepath.Join(dir, "good.keytab")
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/localhost", "TEST.EGRESS", "pw", time.Now(), 1, etypeID.AES256_CTS_HMAC_SHA1_96); err != nil {
		t.Fatal(err)
	}
	b, _ := kt.Marshal()
	os.WriteFile(good, b, 0o600)
	for name, cfg := range map[string]KerberosConfig{
		"no keytab":            {},
		"missing keytab":       {Keytab: filepath.Join(dir, "nope")},
		"garbage keytab":       {Keytab: garbage},
		"other principal":      {Keytab: good, ServicePrincipal: "HTTP/proxy.example"},
		"other realm":          {Keytab: good, ServicePrincipal: "HTTP/localhost@OTHER"},
		"ldap groups, no ldap": {Keytab: good, GroupsFromLDAP: true},
	} {
		if _, err := NewKerberos(cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if os.Geteuid() != 0 { // root reads anything
		if _, err := NewKerberos(KerberosConfig{Keytab: unreadable}, nil); err == nil {
			t.Error("unreadable keytab accepted")
		}
	}
	if _, err := NewKerberos(KerberosConfig{Keytab: good, ServicePrincipal: "HTTP/localhost@TEST.EGRESS"}, nil); err != nil {
		t.Error(err)
	}
}

// forgedToken makes a Negotiate token as a KDC would, with the service key
// of kt: client cname@crealm, ticket valid from start to end.
func forgedToken(t *testing.T, kt *keytab.Keytab, cname, crealm string, start, end time.Time) []byte {
	t.Helper()
	sname := types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, "HTTP/localhost")
	tkt, key, err := messages.NewTicket(types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, cname), crealm, sname, "TEST.EGRESS",
		types.NewKrbFlags(), kt, etypeID.AES256_CTS_HMAC_SHA1_96, 1, start, start, end, end)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.NewWithPassword(cname, crealm, "unused", config.New())
	init, err := spnego.NewNegTokenInitKRB5(cl, tkt, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&spnego.SPNEGOToken{Init: true, NegTokenInit: init}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKerberosTicketChecks: realms, validity times (with tickets made with the
// service key, as the KDC makes them; no KDC needed).
func TestKerberosTicketChecks(t *testing.T) {
	kt := keytab.New()
	if err := kt.AddEntry("HTTP/localhost", "TEST.EGRESS", "svc-pw", time.Now(), 1, etypeID.AES256_CTS_HMAC_SHA1_96); err != nil {
		t.Fatal(err)
	}
	b, _ := kt.Marshal()
	path := filepath.Join(t.TempDir(), "svc.keytab")
	os.WriteFile(path, b, 0o600)
	kv, err := NewKerberos(KerberosConfig{Keytab: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cross, err := NewKerberos(KerberosConfig{Keytab: path, ClientRealms: []string{"PARTNER.TEST"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	hour := time.Hour
	if id, _, err := kv.VerifyNegotiate(ctx, forgedToken(t, kt, "Alice", "TEST.EGRESS", now.Add(-hour), now.Add(hour))); err != nil ||
		id.User != "alice" || id.Domain != "TEST.EGRESS" {
		t.Fatalf("valid ticket: %+v, %v (want the lower-cased name)", id, err)
	}
	for name, c := range map[string]struct {
		v          *Kerberos
		crealm     string
		start, end time.Time
	}{
		"user of another realm":          {kv, "PARTNER.TEST", now.Add(-hour), now.Add(hour)},
		"user of a realm not configured": {cross, "ELSEWHERE.TEST", now.Add(-hour), now.Add(hour)},
		"expired beyond the skew":        {kv, "TEST.EGRESS", now.Add(-2 * hour), now.Add(-6 * time.Minute)},
		"not yet valid":                  {kv, "TEST.EGRESS", now.Add(6 * time.Minute), now.Add(hour)},
	} {
		if id, _, err := c.v.VerifyNegotiate(ctx, forgedToken(t, kt, "alice", c.crealm, c.start, c.end)); !errors.Is(err, ErrBadCredentials) || id.Known() {
			t.Errorf("%s: %+v, %v; want ErrBadCredentials", name, id, err)
		}
	}
	if id, _, err := cross.VerifyNegotiate(ctx, forgedToken(t, kt, "alice", "PARTNER.TEST", now.Add(-hour), now.Add(hour))); err != nil || id.Domain != "PARTNER.TEST" {
		t.Errorf("configured client realm: %+v, %v", id, err)
	}
	// Within the clock skew (5 minutes) a just-expired ticket still passes.
	if _, _, err := kv.VerifyNegotiate(ctx, forgedToken(t, kt, "alice", "TEST.EGRESS", now.Add(-hour), now.Add(-time.Minute))); err != nil {
		t.Errorf("ticket expired 1 minute ago, skew 5 minutes: %v", err)
	}
}

// TestKerberosGroupCache: a Kerberos user's LDAP groups are reused for the
// TTL (a directory outage within it does not refuse them), then asked again
// (the outage now fails closed); failures are not remembered.
func TestKerberosGroupCache(t *testing.T) {
	s := identitytest.StartLDAP(t)
	l, err := NewLDAP(ldapConfigs(t, s)["search"])
	if err != nil {
		t.Fatal(err)
	}
	c := newGroupCache(time.Minute, 2)
	ctx := context.Background()
	now := time.Now()
	if g, err := c.get(ctx, l, "alice", now); err != nil || len(g) != 2 {
		t.Fatalf("first lookup: %v, %v", g, err)
	}
	s.Stop(t)
	if g, err := c.get(ctx, l, "alice", now.Add(30*time.Second)); err != nil || len(g) != 2 {
		t.Fatalf("within the TTL, directory down: %v, %v; want the cached groups", g, err)
	}
	if _, err := c.get(ctx, l, "alice", now.Add(61*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after the TTL, directory down: %v; want ErrUnavailable", err)
	}
	if _, err := c.get(ctx, l, "bob", now); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("bob, directory down: %v", err)
	}
	s.Start(t)
	if g, err := c.get(ctx, l, "bob", now); err != nil || !slices.Equal(g, []string{"staff"}) {
		t.Fatalf("bob after the restart (failure not cached): %v, %v", g, err)
	}
	// Bounded: a third user evicts.
	c.get(ctx, l, "carol", now)
	c.get(ctx, l, "alice", now)
	if n := len(c.entries); n > 2 {
		t.Errorf("%d entries in a cache of 2", n)
	}
}
