// Package active owns the configuration in force: one State (the compiled
// config and the upstream dialer built from it), published atomically and
// swapped whole on reload. A connection or a request takes the State once,
// when it has something to decide, and keeps it for that decision.
package active

import (
	"sync/atomic"

	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
)

// State is one active configuration with what is built from it.
type State struct {
	Config *rules.Config
	Dialer *upstream.Dialer
}

// NewState builds the State of a config.
func NewState(cfg *rules.Config) *State {
	return &State{Config: cfg, Dialer: &upstream.Dialer{
		Hosts:        cfg.Upstream.Hosts,
		AllowPrivate: cfg.Upstream.AllowPrivate,
		Timeout:      cfg.Upstream.DialTimeout,
	}}
}

// Store holds the State in force.
type Store struct{ p atomic.Pointer[State] }

// NewStore starts with cfg in force.
func NewStore(cfg *rules.Config) *Store {
	s := &Store{}
	s.Publish(cfg)
	return s
}

// Load returns the State in force.
func (s *Store) Load() *State { return s.p.Load() }

// Config returns the configuration in force.
func (s *Store) Config() *rules.Config { return s.p.Load().Config }

// Publish makes cfg the configuration in force and returns its State.
func (s *Store) Publish(cfg *rules.Config) *State {
	st := NewState(cfg)
	s.p.Store(st)
	return st
}
