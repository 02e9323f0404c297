package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
)

// Kerberos accepts SPNEGO (Proxy-Authorization: Negotiate) tokens carrying a
// Kerberos AP-REQ for the proxy's service principal, checked with the keys of
// the service keytab. The KDC is never contacted here: a client that cannot
// reach its KDC gets no service ticket, sends no Negotiate token (or only the
// Basic credentials it may have), and the proxy sees an unauthenticated
// request: 407, reason auth_required. A KDC outage therefore fails closed on
// the client's side, and tickets issued before the outage stay valid until
// they expire, as everywhere in Kerberos.
//
// The AP-REQ is verified by this package, not by gokrb5's service package:
// gokrb5's replay cache is a process-wide singleton whose check and insert
// are two separate lock sections (two copies of one token arriving in that
// window would both pass; a narrow race, not observed in tests), with no bound
// on its size; and its SPNEGO acceptor reports a
// KRB-ERROR token as success. Here the replay check and insert are one
// critical section, entries expire after twice the clock skew, and the cache
// is bounded.
type Kerberos struct {
	kt        *keytab.Keytab
	principal *types.PrincipalName // the accepted service principal; nil: any in the keytab
	skew      time.Duration
	ldap      *LDAP    // groups from the directory; nil when none
	fromLDAP  bool     // LDAP groups even when the ticket has a PAC
	realms    []string // client realms accepted besides the service's
	replay    *replayCache
	groups    *groupCache // LDAP groups of recent users
	discard   *log.Logger // gokrb5's PAC decoder logs to it
}

var _ NegotiateVerifier = (*Kerberos)(nil)

const (
	// DefaultClockSkew is the largest difference accepted between the
	// client's clock (in its authenticator) and ours, as MIT's clockskew.
	DefaultClockSkew = 5 * time.Minute
	// maxNegotiateToken bounds a token: AD tickets with large PACs reach
	// ~12 KiB (Windows' MaxTokenSize is 48 KiB).
	maxNegotiateToken = 64 << 10
	// replayCacheMax bounds the replay cache; beyond it new tokens fail
	// closed until old entries expire (only holders of valid tickets can
	// fill it: entries are added after the ticket is verified).
	replayCacheMax = 200_000
	// groupCacheTTL: the LDAP groups of a Kerberos user are looked up at
	// most this often. Negotiate tokens are single-use, so without it every
	// CONNECT tunnel would cost a directory connection and three operations
	// (measured: 650 instead of ~2 900 new tunnels/s). Membership changes
	// apply within this delay, like the Basic cache's cache_ttl; lookup
	// failures are never cached.
	groupCacheTTL = time.Minute
	groupCacheMax = 10_000
)

// NewKerberos loads the keytab. groups is the LDAP source for group lookups
// (may be nil unless cfg.GroupsFromLDAP).
func NewKerberos(cfg KerberosConfig, groups *LDAP) (*Kerberos, error) {
	if cfg.Keytab == "" {
		return nil, errors.New("kerberos: keytab not set")
	}
	b, err := os.ReadFile(cfg.Keytab)
	if err != nil {
		return nil, fmt.Errorf("kerberos: keytab: %v", err)
	}
	kt := new(keytab.Keytab)
	if err := kt.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("kerberos: keytab %s is not a keytab: %v", cfg.Keytab, err)
	}
	if len(kt.Entries) == 0 {
		return nil, fmt.Errorf("kerberos: keytab %s has no keys", cfg.Keytab)
	}
	k := &Kerberos{kt: kt, skew: cfg.ClockSkew, ldap: groups, fromLDAP: cfg.GroupsFromLDAP, realms: cfg.ClientRealms,
		replay: newReplayCache(replayCacheMax), groups: newGroupCache(groupCacheTTL, groupCacheMax),
		discard: log.New(io.Discard, "", 0)}
	if k.skew <= 0 {
		k.skew = DefaultClockSkew
	}
	if cfg.ServicePrincipal != "" {
		name, realm, _ := strings.Cut(cfg.ServicePrincipal, "@")
		pn := types.NewPrincipalName(1, name) // KRB_NT_PRINCIPAL; only the components are compared
		found := false
		for _, e := range kt.Entries {
			if slices.Equal(e.Principal.Components, pn.NameString) && (realm == "" || e.Principal.Realm == realm) {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("kerberos: keytab %s has no key for %s", cfg.Keytab, cfg.ServicePrincipal)
		}
		k.principal = &pn
	}
	if cfg.GroupsFromLDAP && groups == nil {
		return nil, errors.New("kerberos: groups_from_ldap needs an ldap block")
	}
	return k, nil
}

// VerifyNegotiate checks one Negotiate token: a SPNEGO NegTokenInit whose
// optimistic mechanism token is a Kerberos AP-REQ (or a bare Kerberos GSS-API
// token). There is one leg: no response token is produced (gokrb5 cannot
// build an AP-REP), so clients must not require mutual authentication, which
// curl and browsers do not for proxies.
func (k *Kerberos) VerifyNegotiate(ctx context.Context, token []byte) (id Identity, resp []byte, err error) {
	// The token is parsed before anything authenticates it, by gokrb5's
	// ASN.1 and NDR decoders: a panic there is a bad token, not a crash.
	defer func() {
		if p := recover(); p != nil {
			id, resp, err = Identity{}, nil, fmt.Errorf("kerberos: %w: token decoding panicked: %v", ErrBadCredentials, p)
		}
	}()
	if len(token) == 0 || len(token) > maxNegotiateToken {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: token empty or larger than %d bytes", ErrBadCredentials, maxNegotiateToken)
	}
	ap, err := apReq(token)
	if err != nil {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: %v", ErrBadCredentials, err)
	}
	// Ticket decrypted with the service key (a ticket for another
	// service fails here), its times checked against the skew, the
	// authenticator decrypted with the session key and its client name and
	// time checked. Addressful tickets are refused: the verifier is not
	// given the client's address (MIT and AD issue address-less tickets by
	// default).
	if ok, err := ap.Verify(k.kt, k.skew, types.HostAddress{}, k.principal); err != nil || !ok {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: %v", ErrBadCredentials, krbReason(err))
	}
	tkt := &ap.Ticket.DecryptedEncPart
	if !ap.Authenticator.CName.Equal(tkt.CName) || ap.Authenticator.CRealm != tkt.CRealm {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: authenticator and ticket name different clients", ErrBadCredentials)
	}
	if tkt.CRealm != ap.Ticket.Realm && !slices.Contains(k.realms, tkt.CRealm) {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: client realm %s is not %s (cross-realm users need client_realms)",
			ErrBadCredentials, tkt.CRealm, ap.Ticket.Realm)
	}
	if !k.replay.add(ap, time.Now(), 2*k.skew) {
		return Identity{}, nil, fmt.Errorf("kerberos: %w: replayed authenticator (or replay cache full)", ErrBadCredentials)
	}
	id = Identity{
		User:   strings.ToLower(tkt.CName.PrincipalNameString()),
		Domain: tkt.CRealm,
		Method: MethodNegotiate,
	}
	isPAC, pac, err := ap.Ticket.GetPACType(k.kt, k.principal, k.discard)
	if isPAC && err != nil {
		// MIT KDCs (1.20 and later) put a PAC without logon information
		// (so without groups) in every ticket: not an error, just no
		// groups from it. Any other defect of a PAC refuses the ticket.
		if pac.KerbValidationInfo != nil || !strings.Contains(err.Error(), "does not contain a KerbValidationInfo") {
			return Identity{}, nil, fmt.Errorf("kerberos: %w: invalid PAC: %v", ErrBadCredentials, err)
		}
		isPAC = false
	}
	switch {
	case isPAC && !k.fromLDAP:
		id.Groups = pac.KerbValidationInfo.GetGroupMembershipSIDs()
		if n := pac.KerbValidationInfo.EffectiveName.Value; n != "" {
			id.User = strings.ToLower(n) // the canonical sAMAccountName
		}
	case k.ldap != nil:
		id.Groups, err = k.groups.get(ctx, k.ldap, id.User, time.Now())
		if err != nil {
			return Identity{}, nil, fmt.Errorf("kerberos: groups of %s: %w", id.User, err)
		}
	}
	slices.Sort(id.Groups)
	id.Groups = slices.Compact(id.Groups)
	return id, nil, nil
}

// apReq extracts the AP-REQ from a Negotiate token.
func apReq(token []byte) (*messages.APReq, error) {
	mech := token
	if token[0] == 0x60 || token[0] == 0xa1 {
		var st spnego.SPNEGOToken
		if err := st.Unmarshal(token); err == nil {
			if !st.Init {
				return nil, errors.New("a SPNEGO continuation token without a context")
			}
			init := st.NegTokenInit
			if len(init.MechTypes) == 0 || !(init.MechTypes[0].Equal(gssapi.OIDKRB5.OID()) || init.MechTypes[0].Equal(gssapi.OIDMSLegacyKRB5.OID())) {
				return nil, errors.New("SPNEGO token without Kerberos as the preferred mechanism (NTLM?)")
			}
			if len(init.MechTokenBytes) == 0 {
				return nil, errors.New("SPNEGO token without a Kerberos token")
			}
			mech = init.MechTokenBytes
		}
		// else: maybe a bare Kerberos GSS-API token (also tag 0x60).
	}
	var kt spnego.KRB5Token
	if err := kt.Unmarshal(mech); err != nil {
		return nil, errors.New("neither a SPNEGO nor a Kerberos token")
	}
	if !kt.IsAPReq() {
		return nil, errors.New("Kerberos token is not an AP-REQ")
	}
	return &kt.APReq, nil
}

// krbReason is a one-line reason for a failed verification. gokrb5's errors
// name principals, times and error codes, never keys.
func krbReason(err error) string {
	if err == nil {
		return "AP-REQ not valid"
	}
	var ke messages.KRBError
	if errors.As(err, &ke) {
		return ke.EText
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// replayCache remembers the authenticators (client, time, microseconds,
// service) seen within their validity, RFC 4120 §3.2.3.
type replayCache struct {
	mu      sync.Mutex
	seen    map[string]time.Time // key → when it may be forgotten
	max     int
	nextGC  time.Time
	gcEvery time.Duration
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seen: make(map[string]time.Time), max: max, gcEvery: 10 * time.Second}
}

// add records ap's authenticator and reports whether it is new. A full cache
// refuses (fails closed) rather than forgetting entries still valid.
func (c *replayCache) add(ap *messages.APReq, now time.Time, keep time.Duration) bool {
	a := &ap.Authenticator
	key := fmt.Sprintf("%s@%s|%d.%06d|%s@%s", a.CName.PrincipalNameString(), a.CRealm, a.CTime.Unix(), a.Cusec,
		ap.Ticket.SName.PrincipalNameString(), ap.Ticket.Realm)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.nextGC) {
		for k, until := range c.seen {
			if now.After(until) {
				delete(c.seen, k)
			}
		}
		c.nextGC = now.Add(c.gcEvery)
	}
	if _, dup := c.seen[key]; dup || len(c.seen) >= c.max {
		return false
	}
	c.seen[key] = now.Add(keep)
	return true
}

// groupCache remembers the LDAP groups of recent Kerberos users for a short
// TTL. Concurrent first lookups of one user may each ask the directory; the
// last answer is kept.
type groupCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]groupEntry
}

type groupEntry struct {
	groups  []string // shared by every identity served from the entry: never modified
	expires time.Time
}

func newGroupCache(ttl time.Duration, max int) *groupCache {
	return &groupCache{ttl: ttl, max: max, entries: make(map[string]groupEntry)}
}

// get returns user's groups from the cache, or from l (and caches them).
func (c *groupCache) get(ctx context.Context, l *LDAP, user string, now time.Time) ([]string, error) {
	c.mu.Lock()
	e, ok := c.entries[user]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return slices.Clone(e.groups), nil
	}
	groups, err := l.Groups(ctx, user)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries { // still full: forget arbitrary ones
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[user] = groupEntry{groups: slices.Clone(groups), expires: now.Add(c.ttl)}
	return groups, nil
}
