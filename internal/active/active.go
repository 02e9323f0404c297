// Package active owns the configuration in force: one State (the compiled
// config, the upstream dialer and the authenticator built from it),
// published atomically and swapped whole on reload. A connection or a
// request takes the State once, when it has something to decide, and keeps
// it for that decision.
package active

import (
	"sync/atomic"

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
func NewState(cfg *rules.Config, limiter *identity.FailureLimiter) *State {
	st := &State{Config: cfg, Dialer: &upstream.Dialer{
		Hosts:        cfg.Upstream.Hosts,
		AllowPrivate: cfg.Upstream.AllowPrivate,
		Timeout:      cfg.Upstream.DialTimeout,
	}}
	st.Auth, st.AuthErrors = identity.Build(&cfg.Auth.Sources, limiter)
	return st
}

// Store holds the State in force.
type Store struct {
	p       atomic.Pointer[State]
	limiter *identity.FailureLimiter
}

// NewStore starts with cfg in force.
func NewStore(cfg *rules.Config) *Store {
	s := &Store{limiter: identity.NewFailureLimiter(nil)}
	s.Publish(cfg)
	return s
}

// Load returns the State in force.
func (s *Store) Load() *State { return s.p.Load() }

// Config returns the configuration in force.
func (s *Store) Config() *rules.Config { return s.p.Load().Config }

// Publish makes cfg the configuration in force and returns its State.
func (s *Store) Publish(cfg *rules.Config) *State {
	st := NewState(cfg, s.limiter)
	s.p.Store(st)
	return st
}
