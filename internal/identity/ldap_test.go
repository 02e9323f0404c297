package identity

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/identity/identitytest"
)

// ldapConfigs are the two ways to find a user: a DN template (bind directly,
// groups searched as the user) and a search as a service account.
func ldapConfigs(t *testing.T, s *identitytest.LDAP) map[string]LDAPConfig {
	return ldapConfigsTB(t, s)
}

func ldapConfigsTB(t testing.TB, s *identitytest.LDAP) map[string]LDAPConfig {
	pw := filepath.Join(t.TempDir(), "bind.pw")
	if err := os.WriteFile(pw, []byte(identitytest.LDAPServicePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]LDAPConfig{
		"template": {
			URL:            s.URL,
			UserDNTemplate: identitytest.LDAPUserTemplate,
			GroupBase:      identitytest.LDAPGroupsDN,
			GroupFilter:    "(&(objectClass=groupOfNames)(member={dn}))",
			GroupAttribute: "cn",
			Domain:         "test.egress",
			Timeout:        2 * time.Second,
		},
		"template+service": {
			URL:              s.URL,
			UserDNTemplate:   identitytest.LDAPUserTemplate,
			BindDN:           identitytest.LDAPServiceDN,
			BindPasswordFile: pw,
			GroupBase:        identitytest.LDAPGroupsDN,
			GroupFilter:      "(member={dn})",
			Domain:           "test.egress",
			Timeout:          2 * time.Second,
		},
		"search": {
			URL:              s.URL,
			BindDN:           identitytest.LDAPServiceDN,
			BindPasswordFile: pw,
			UserBase:         identitytest.LDAPPeopleDN,
			UserFilter:       "(&(objectClass=inetOrgPerson)(uid={user}))",
			GroupBase:        identitytest.LDAPGroupsDN,
			GroupFilter:      "(member={dn})",
			Domain:           "test.egress",
			Timeout:          2 * time.Second,
		},
	}
}

func TestLDAPVerifyPassword(t *testing.T) {
	s := identitytest.StartLDAP(t)
	for mode, cfg := range ldapConfigs(t, s) {
		t.Run(mode, func(t *testing.T) {
			l, err := NewLDAP(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, c := range []struct {
				user, password string
				want           []string
				wantUser       string
			}{
				{"alice", identitytest.AlicePassword, []string{"communication", "staff"}, "alice"},
				{"bob", identitytest.BobPassword, []string{"staff"}, "bob"},
				{"carol", identitytest.CarolPassword, nil, "carol"},
				// The directory matches names without case: the identity
				// carries the canonical (lower-case) spelling.
				{"ALICE", identitytest.AlicePassword, []string{"communication", "staff"}, "alice"},
			} {
				id, err := l.VerifyPassword(ctx, c.user, c.password)
				if err != nil {
					t.Fatalf("%s: %v", c.user, err)
				}
				if id.User != c.wantUser || id.Domain != "test.egress" || id.Method != MethodBasic || !slices.Equal(id.Groups, c.want) {
					t.Errorf("%s: got %+v, want user %s groups %v", c.user, id, c.wantUser, c.want)
				}
			}
			for _, c := range []struct{ name, user, password string }{
				{"wrong password", "alice", "not-" + identitytest.AlicePassword},
				{"another user's password", "alice", identitytest.BobPassword},
				{"unknown user", "mallory", identitytest.AlicePassword},
				// An unauthenticated bind (DN, no password) succeeds on
				// many servers: never sent.
				{"empty password", "alice", ""},
				{"filter wildcard", "*", identitytest.AlicePassword},
				{"filter injection", ")(uid=*", identitytest.AlicePassword},
				{"filter injection 2", "alice)(|(uid=*", identitytest.AlicePassword},
				{"dn injection", "alice,ou=people", identitytest.AlicePassword},
				{"insignificant space", " alice", identitytest.AlicePassword},
				{"trailing space", "alice ", identitytest.AlicePassword},
				{"nul", "alice\x00", identitytest.AlicePassword},
				{"soft hyphen", "al\u00adice", identitytest.AlicePassword},
				{"empty user", "", identitytest.AlicePassword},
				{"service account as user", "proxy", identitytest.LDAPServicePass},
			} {
				id, err := l.VerifyPassword(ctx, c.user, c.password)
				if !errors.Is(err, ErrBadCredentials) || id.Known() {
					t.Errorf("%s: got %+v, %v; want ErrBadCredentials", c.name, id, err)
				}
				if c.password != "" && err != nil && strings.Contains(err.Error(), c.password) {
					t.Errorf("%s: the password is in the error %q", c.name, err)
				}
			}
			groups, err := l.Groups(ctx, "alice")
			if cfg.BindDN == "" {
				// Anonymous searches are refused by this directory: the
				// lookup fails closed instead of returning no groups.
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("Groups(alice), anonymous: %v, %v; want ErrUnavailable", groups, err)
				}
				return
			}
			if err != nil || !slices.Equal(groups, []string{"communication", "staff"}) {
				t.Errorf("Groups(alice) = %v, %v", groups, err)
			}
			groups, err = l.Groups(ctx, "mallory")
			if err != nil || len(groups) != 0 {
				t.Errorf("Groups(mallory) = %v, %v; want none", groups, err)
			}
		})
	}
}

// TestLDAPOutage: a stopped directory fails closed (ErrUnavailable, not
// ErrBadCredentials, never an identity) within the timeout, and the next
// check after the restart succeeds.
func TestLDAPOutage(t *testing.T) {
	s := identitytest.StartLDAP(t)
	cfg := ldapConfigs(t, s)["search"]
	cfg.Timeout = time.Second
	l, err := NewLDAP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := l.VerifyPassword(ctx, "alice", identitytest.AlicePassword); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	start := time.Now()
	id, err := l.VerifyPassword(ctx, "alice", identitytest.AlicePassword)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBadCredentials) || id.Known() {
		t.Fatalf("directory down: got %+v, %v; want ErrUnavailable", id, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("directory down: took %v with a 1s timeout", d)
	}
	if _, err := l.Groups(ctx, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Groups with the directory down: %v; want ErrUnavailable", err)
	}
	s.Start(t)
	if id, err := l.VerifyPassword(ctx, "alice", identitytest.AlicePassword); err != nil || id.User != "alice" {
		t.Fatalf("after restart: %+v, %v", id, err)
	}
}

// TestLDAPSilentServer: a server that accepts connections and never answers
// (hung, or a black-holing middlebox) fails closed within the timeout, and a
// caller's shorter deadline wins.
func TestLDAPSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var held []net.Conn // accepted, never answered; closed when the test ends
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	l, err := NewLDAP(LDAPConfig{URL: "ldap://" + ln.Addr().String(), UserDNTemplate: "uid={user},dc=x", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = l.VerifyPassword(context.Background(), "alice", "pw")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("silent server: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent server: took %v with a 500ms timeout", d)
	}
	l.timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err = l.VerifyPassword(ctx, "alice", "pw"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("silent server, caller deadline: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("caller deadline of 300ms ignored: took %v", d)
	}
}

func TestNewLDAPRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, c := range []struct {
		name string
		cfg  LDAPConfig
	}{
		{"no url", LDAPConfig{UserDNTemplate: "uid={user}"}},
		{"http url", LDAPConfig{URL: "http://x", UserDNTemplate: "uid={user}"}},
		{"no user lookup", LDAPConfig{URL: "ldap://x"}},
		{"template without {user}", LDAPConfig{URL: "ldap://x", UserDNTemplate: "uid=alice"}},
		{"filter without base", LDAPConfig{URL: "ldap://x", UserFilter: "(uid={user})"}},
		{"both", LDAPConfig{URL: "ldap://x", UserFilter: "(uid={user})", UserBase: "dc=x", UserDNTemplate: "uid={user}"}},
		{"bad filter", LDAPConfig{URL: "ldap://x", UserFilter: "(uid={user}", UserBase: "dc=x"}},
		{"group base without filter", LDAPConfig{URL: "ldap://x", UserDNTemplate: "uid={user}", GroupBase: "dc=x"}},
		{"bind dn without password", LDAPConfig{URL: "ldap://x", UserDNTemplate: "uid={user}", BindDN: "cn=x"}},
		{"empty bind password", LDAPConfig{URL: "ldap://x", UserDNTemplate: "uid={user}", BindDN: "cn=x", BindPasswordFile: empty}},
		{"missing bind password file", LDAPConfig{URL: "ldap://x", UserDNTemplate: "uid={user}", BindDN: "cn=x", BindPasswordFile: filepath.Join(dir, "nope")}},
		{"starttls and ldaps", LDAPConfig{URL: "ldaps://x", StartTLS: true, UserDNTemplate: "uid={user}"}},
		{"missing ca", LDAPConfig{URL: "ldaps://x", CAFile: filepath.Join(dir, "nope"), UserDNTemplate: "uid={user}"}},
	} {
		if _, err := NewLDAP(c.cfg); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// TestLDAPTLS: ldaps:// and StartTLS verify the directory's certificate
// against ca_file; an untrusted certificate fails closed before any password
// is sent.
func TestLDAPTLS(t *testing.T) {
	s := identitytest.StartLDAP(t)
	base := ldapConfigs(t, s)["search"]
	other := identitytest.StartLDAP(t) // another CA
	ctx := context.Background()
	for name, c := range map[string]struct {
		url      string
		startTLS bool
		ca       string
		ok       bool
	}{
		"ldaps":                {s.LDAPS, false, s.CAFile, true},
		"starttls":             {s.URL, true, s.CAFile, true},
		"ldaps, system roots":  {s.LDAPS, false, "", false},
		"ldaps, another CA":    {s.LDAPS, false, other.CAFile, false},
		"starttls, another CA": {s.URL, true, other.CAFile, false},
	} {
		cfg := base
		cfg.URL, cfg.StartTLS, cfg.CAFile = c.url, c.startTLS, c.ca
		l, err := NewLDAP(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		id, err := l.VerifyPassword(ctx, "alice", identitytest.AlicePassword)
		switch {
		case c.ok && (err != nil || id.User != "alice" || len(id.Groups) != 2):
			t.Errorf("%s: %+v, %v", name, id, err)
		case !c.ok && (!errors.Is(err, ErrUnavailable) || id.Known()):
			t.Errorf("%s: %+v, %v; want ErrUnavailable", name, id, err)
		}
	}
}
