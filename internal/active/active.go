// Package active owns the configuration in force: one State (the compiled
// config, the upstream dialer and the authenticator built from it),
// published atomically and swapped whole on reload. A connection or a
// request takes the State once, when it has something to decide, and keeps
// it for that decision. The DNS cache outlives reloads that keep its
// settings.
package active

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/egress-proxy/egress/internal/dnscache"
	"github.com/egress-proxy/egress/internal/identity"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
)

// State is one active configuration with what is built from it.
type State struct {
	Config *rules.Config
	Dialer *upstream.Dialer
	// Auth checks Proxy-Authorization against this config's sources; nil
	// when it has none. Its credential cache dies with the State, so a
	// reloaded user or group file is never answered from the old one.
	Auth *identity.Authenticator
	// AuthErrors are the identity sources that could not be built (they
	// fail closed); the service logs them.
	AuthErrors []error
}

// NewState builds the State of a config. limiter (shared by every State,
// may be nil) counts authentication failures per source across reloads.
// dns resolves names not in upstream.hosts (nil: Go's resolver, uncached).
func NewState(cfg *rules.Config, limiter *identity.FailureLimiter, dns upstream.Resolver) *State {
	st := &State{Config: cfg, Dialer: &upstream.Dialer{
		Hosts:        cfg.Upstream.Hosts,
		AllowPrivate: cfg.Upstream.AllowPrivate,
		Timeout:      cfg.Upstream.DialTimeout,
		Resolver:     dns,
	}}
	st.Auth, st.AuthErrors = identity.Build(&cfg.Auth.Sources, limiter)
	return st
}

// Store holds the State in force.
type Store struct {
	p       atomic.Pointer[State]
	limiter *identity.FailureLimiter
	// observeDNS, given to every DNS cache the Store builds, counts
	// each DNS lookup by result (egress_dns_lookups_total).
	observeDNS func(result string)

	mu     sync.Mutex // Publish
	dns    *dnscache.Cache
	dnsKey string
}

// NewStore starts with cfg in force.
func NewStore(cfg *rules.Config) *Store { return NewStoreObserved(cfg, nil) }

// NewStoreObserved starts with cfg in force; observeDNS (may be nil) is
// told the result of each DNS lookup.
func NewStoreObserved(cfg *rules.Config, observeDNS func(result string)) *Store {
	s := &Store{limiter: identity.NewFailureLimiter(nil), observeDNS: observeDNS}
	s.Publish(cfg)
	return s
}

// DNS returns the DNS cache in force, nil when dns_cache_size is 0.
func (s *Store) DNS() *dnscache.Cache {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dns
}

// resolver returns the cache for cfg's settings: the one in use when they
// are unchanged (its answers stay), a new one otherwise. Called with mu
// held.
func (s *Store) resolver(cfg *rules.Config) upstream.Resolver {
	u := cfg.Upstream
	if u.DNSCacheSize <= 0 {
		s.dns, s.dnsKey = nil, ""
		return nil
	}
	key := fmt.Sprint(u.DNSServers, u.DNSCacheSize, u.DNSMaxTTL, u.DNSServeStale, u.DialTimeout)
	if s.dns == nil || key != s.dnsKey {
		s.dns = dnscache.New(dnscache.Options{
			Servers: u.DNSServers, Size: u.DNSCacheSize, MaxTTL: u.DNSMaxTTL, ServeStale: u.DNSServeStale, Timeout: u.DialTimeout,
			NegativeTTL: min(u.DNSMaxTTL, dnscache.DefaultNegativeTTL), Observe: s.observeDNS,
		})
		s.dnsKey = key
	}
	return s.dns
}

// Load returns the State in force.
func (s *Store) Load() *State { return s.p.Load() }

// Config returns the configuration in force.
func (s *Store) Config() *rules.Config { return s.p.Load().Config }

// Publish makes cfg the configuration in force and returns its State.
func (s *Store) Publish(cfg *rules.Config) *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := NewState(cfg, s.limiter, s.resolver(cfg))
	s.p.Store(st)
	return st
}
