package identity

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// More errors of Authenticate (each also matches ErrBadCredentials with
// errors.Is, so that a caller that only knows "bad or unavailable" answers
// 407).
var (
	// ErrRateLimited: the source failed too often in the last minute; its
	// credentials are not checked at all until the window passes.
	ErrRateLimited = &wrapped{msg: "too many failed authentications from this source", base: ErrBadCredentials}
	// ErrNotOffered: the scheme is not accepted here (Negotiate without a
	// keytab, Basic without a password source, Basic over plain TCP).
	ErrNotOffered = &wrapped{msg: "authentication scheme not offered on this listener", base: ErrBadCredentials}
)

type wrapped struct {
	msg  string
	base error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.base }

// Defaults of the auth block.
const (
	DefaultCacheTTL    = 5 * time.Minute
	DefaultMaxFailures = 10 // per source and minute
	DefaultRealm       = "egress"
	// maxCacheEntries bounds the credential cache; maxSources the failure
	// table. Beyond them the oldest are forgotten first (cache) or an
	// arbitrary idle source (failures).
	maxCacheEntries = 65536
	maxSources      = 65536
)

// Authenticator checks the credentials of one Proxy-Authorization value
// against the verifiers of one configuration. A reload builds a new one (a
// changed htpasswd or group file is never answered from the old cache); the
// FailureLimiter outlives it.
//
// Successful Basic checks are cached for CacheTTL under an HMAC-SHA256 of
// "user\x00password" with a key drawn at start: the cache never holds a
// password, and its keys are useless outside this process. Negotiate tokens
// are not cached (each is checked; the connection remembers the identity).
type Authenticator struct {
	password  []PasswordVerifier
	negotiate NegotiateVerifier
	ttl       time.Duration
	limiter   *FailureLimiter
	limit     int
	now       func() time.Time

	key   [32]byte
	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	id      Identity
	expires time.Time
}

// Options build an Authenticator.
type Options struct {
	Password    []PasswordVerifier // Basic: tried in order (htpasswd, then LDAP)
	Negotiate   NegotiateVerifier  // nil: Negotiate not offered
	CacheTTL    time.Duration      // 0: DefaultCacheTTL; negative: no cache
	Limiter     *FailureLimiter    // nil: failures are not limited
	MaxFailures int                // per source and minute; 0: DefaultMaxFailures
	Now         func() time.Time   // nil: time.Now
}

// NewAuthenticator builds an Authenticator.
func NewAuthenticator(o Options) *Authenticator {
	a := &Authenticator{password: o.Password, negotiate: o.Negotiate, ttl: o.CacheTTL,
		limiter: o.Limiter, limit: o.MaxFailures, now: o.Now, cache: map[[32]byte]cached{}}
	if a.ttl == 0 {
		a.ttl = DefaultCacheTTL
	}
	if a.limit == 0 {
		a.limit = DefaultMaxFailures
	}
	if a.now == nil {
		a.now = time.Now
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic("identity: no randomness for the cache key: " + err.Error())
	}
	return a
}

// OffersBasic reports whether a password source is configured.
func (a *Authenticator) OffersBasic() bool { return a != nil && len(a.password) > 0 }

// OffersNegotiate reports whether a Negotiate verifier is configured.
func (a *Authenticator) OffersNegotiate() bool { return a != nil && a.negotiate != nil }

// Authenticate checks c for a client at src. basicAllowed says whether Basic
// may be used on the listener the request came in on. It returns the
// identity and, for Negotiate, a response token for Proxy-Authenticate (nil
// when none), or an error wrapping ErrBadCredentials (including
// ErrMalformed, ErrRateLimited, ErrNotOffered) or ErrUnavailable. Only wrong
// credentials count against src's failure limit; an unavailable source
// fails closed without blaming the client.
func (a *Authenticator) Authenticate(ctx context.Context, src netip.Addr, c Credentials, basicAllowed bool) (Identity, []byte, error) {
	if a == nil {
		return Identity{}, nil, ErrNotOffered
	}
	if a.limiter.Blocked(src, a.limit) {
		return Identity{}, nil, ErrRateLimited
	}
	switch c.Method {
	case MethodBasic:
		if !basicAllowed || len(a.password) == 0 {
			return Identity{}, nil, ErrNotOffered
		}
		id, err := a.basic(ctx, c.User, c.Password)
		if errors.Is(err, ErrBadCredentials) {
			a.limiter.Fail(src)
		}
		return id, nil, err
	case MethodNegotiate:
		if a.negotiate == nil {
			return Identity{}, nil, ErrNotOffered
		}
		id, resp, err := a.negotiate.VerifyNegotiate(ctx, c.Token)
		if err == nil && !id.Known() {
			err = fmt.Errorf("negotiate: no principal: %w", ErrBadCredentials)
		}
		if err != nil {
			if errors.Is(err, ErrBadCredentials) {
				a.limiter.Fail(src)
			}
			return Identity{}, nil, err
		}
		id.Method = MethodNegotiate
		return id, resp, nil
	}
	return Identity{}, nil, ErrNotOffered
}

func (a *Authenticator) cacheKey(user, password string) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// basic tries the password verifiers in order; the first success wins. With
// none succeeding, any unavailable source makes the answer ErrUnavailable
// (the user may exist there): fail closed, never "wrong password".
func (a *Authenticator) basic(ctx context.Context, user, password string) (Identity, error) {
	var k [32]byte
	now := a.now()
	if a.ttl > 0 {
		k = a.cacheKey(user, password)
		a.mu.Lock()
		e, ok := a.cache[k]
		a.mu.Unlock()
		if ok && now.Before(e.expires) {
			return e.id, nil
		}
	}
	var unavailable error
	for _, v := range a.password {
		id, err := v.VerifyPassword(ctx, user, password)
		if err == nil && id.Known() {
			id.Method = MethodBasic
			if a.ttl > 0 {
				a.store(k, id, now)
			}
			return id, nil
		}
		if errors.Is(err, ErrUnavailable) && unavailable == nil {
			unavailable = err
		}
	}
	if unavailable != nil {
		return Identity{}, unavailable
	}
	return Identity{}, fmt.Errorf("basic: unknown user or wrong password: %w", ErrBadCredentials)
}

func (a *Authenticator) store(k [32]byte, id Identity, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCacheEntries {
		for key, e := range a.cache {
			if !now.Before(e.expires) {
				delete(a.cache, key)
			}
		}
		for key := range a.cache {
			if len(a.cache) < maxCacheEntries {
				break
			}
			delete(a.cache, key) // arbitrary: the map's iteration order is random
		}
	}
	a.cache[k] = cached{id: id, expires: now.Add(a.ttl)}
}

// FailureLimiter counts failed authentications per source (an IPv6 client
// by its /64) over a sliding minute. It is safe for concurrent use and lives
// as long as the process, across reloads.
type FailureLimiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[netip.Addr]*window
}

// window counts failures in the current and the previous minute.
type window struct {
	start     time.Time
	cur, prev int
}

// NewFailureLimiter returns an empty limiter (now nil: time.Now).
func NewFailureLimiter(now func() time.Time) *FailureLimiter {
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{now: now, m: map[netip.Addr]*window{}}
}

func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// roll advances w to now and returns the failures of the last minute,
// weighting the previous minute by how much of it the sliding window covers.
func (w *window) roll(now time.Time) int {
	switch el := now.Sub(w.start); {
	case el >= 2*time.Minute:
		w.start, w.cur, w.prev = now, 0, 0
	case el >= time.Minute:
		w.start, w.prev, w.cur = w.start.Add(time.Minute), w.cur, 0
	}
	frac := 1 - float64(now.Sub(w.start))/float64(time.Minute)
	return w.cur + int(float64(w.prev)*frac)
}

// Blocked reports whether src reached limit failures in the last minute
// (limit < 0: never).
func (l *FailureLimiter) Blocked(src netip.Addr, limit int) bool {
	if l == nil || limit < 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.m[sourceKey(src)]
	return w != nil && w.roll(l.now()) >= limit
}

// Fail counts one failure of src.
func (l *FailureLimiter) Fail(src netip.Addr) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := sourceKey(src)
	w := l.m[k]
	if w == nil {
		if len(l.m) >= maxSources {
			l.sweep(now)
		}
		w = &window{start: now}
		l.m[k] = w
	}
	w.roll(now)
	w.cur++
}

// sweep forgets sources without a failure in two minutes, then arbitrary
// ones until there is room.
func (l *FailureLimiter) sweep(now time.Time) {
	for k, w := range l.m {
		if now.Sub(w.start) >= 2*time.Minute {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < maxSources {
			return
		}
		delete(l.m, k)
	}
}
