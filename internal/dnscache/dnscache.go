// Package dnscache owns name lookups for upstream dials: a DNS client that
// reads each answer's TTL, a bounded cache that keeps answers (and
// NXDOMAIN/NODATA) no longer than their TTL, and one query in flight per
// name however many connections ask for it at once.
//
// Go's own resolver returns no TTLs and caches nothing, so without this
// every allowed CONNECT or SNI to a real name waits for a fresh lookup.
// The order of a lookup is: /etc/hosts, then the cache, then the
// configured servers (upstream.dns_servers, else the nameservers of
// /etc/resolv.conf). A name without a dot, and a name the servers do not
// know that /etc/resolv.conf's search list could complete, are left to
// Go's resolver, which applies the search list; localhost names are too.
// Names under .invalid are answered "not found" without a query (RFC 6761).
//
// A name in use does not expire: a hit in the last tenth of an answer's TTL
// asks the servers again in the background (prefetch, as Unbound does), so
// that its connections keep being answered from the cache.
//
// When the servers fail, a name whose answer expired less than ServeStale
// ago is answered with that expired answer (RFC 8767): at once if the query
// has not answered within StaleAnswerWait, else when it fails; a stale
// answer is kept for StaleTTL before the servers are asked again.
package dnscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Results, the label values of egress_dns_lookups_total.
const (
	ResultHit      = "hit"      // answered from the cache (an address or a cached "not found")
	ResultShared   = "shared"   // waited for a query another connection had started for the name
	ResultResolved = "resolved" // a query answered: addresses, NXDOMAIN or NODATA
	ResultFailed   = "failed"   // no server answered usably in time
	ResultHosts    = "hosts"    // /etc/hosts or a reserved name; no query
	ResultSystem   = "system"   // left to Go's resolver (search list, localhost)
	// A name in use asked again before its answer expires (prefetch): the
	// new answer replaced the old one, or no server answered usably (the
	// old answer is kept until it expires).
	ResultPrefetched     = "prefetched"
	ResultPrefetchFailed = "prefetch_failed"
	// ResultStale: the servers failed (or were slow) and an expired answer
	// was given (serve-stale, RFC 8767).
	ResultStale = "stale"
)

// Results lists every result, for metrics set to zero up front.
var Results = []string{ResultHit, ResultShared, ResultResolved, ResultFailed, ResultHosts, ResultSystem, ResultPrefetched, ResultPrefetchFailed, ResultStale}

// MinPrefetchTTL: an answer kept for less is not prefetched (its last tenth
// would be under a second).
const MinPrefetchTTL = 10 * time.Second

// Serve-stale (RFC 8767): a stale answer is kept for StaleTTL (§4: 30 s), and
// a lookup waits at most StaleAnswerWait for the servers before it is given
// one (§5, the client response timer: 1.8 s).
const (
	StaleTTL        = 30 * time.Second
	StaleAnswerWait = 1800 * time.Millisecond
)

// DefaultNegativeTTL is the longest a "not found" is kept.
const DefaultNegativeTTL = 30 * time.Second

// Options configure a Cache.
type Options struct {
	// Servers are asked in order; empty: the nameservers of ResolvConf.
	Servers []netip.AddrPort
	// Size is how many names are kept (answers and names in flight).
	Size int
	// MaxTTL caps a positive answer's TTL, NegativeTTL a negative one's.
	MaxTTL, NegativeTTL time.Duration
	// ServeStale is how long after its expiry an answer with addresses may
	// still be given when the servers fail; 0: never.
	ServeStale time.Duration
	// Timeout bounds one name's query, whoever waits for it and however
	// long they wait (upstream.dial_timeout). 0: 10 s.
	Timeout time.Duration
	// MaxInFlight bounds the queries running at once; a lookup beyond it
	// waits for a slot (within its deadline). 0: 256.
	MaxInFlight int
	// Observe, when set, is called once per lookup with its result.
	Observe func(result string)

	// ResolvConf and Hosts are the system files ("" means the usual
	// /etc paths). System is the resolver names are left to (nil: Go's).
	ResolvConf, Hosts string
	System            interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// Cache resolves names; it satisfies upstream.Resolver. It is safe for
// concurrent use and outlives config reloads while its options stay the
// same.
type Cache struct {
	opt   Options
	conf  *watched[sysConf]
	hosts *watched[map[string][]netip.Addr]
	slots chan struct{}
	// prefetching counts the prefetches running: at most a quarter of the
	// slots, so that a dead server cannot have them all held by prefetches
	// while connections' lookups wait.
	prefetching atomic.Int32
	now         func() time.Time // tests

	mu      sync.Mutex
	entries map[string]*entry
	size    atomic.Int64
}

// entry is one name: in flight until done is closed, then an answer
// (addrs, or err for "not found") valid until expires.
type entry struct {
	done    chan struct{}
	addrs   []netip.Addr // read-only once done
	err     error
	expires time.Time
	ttl     time.Duration // what expires was set from
	// refresh: a prefetch of the name was started from this entry.
	refresh atomic.Bool
	// staleUntil: until when addrs may be given stale (serve-stale); an
	// answer given stale keeps the limit of the one it came from.
	staleUntil time.Time
	// stale and staleLimit (set before the entry is shared, read-only): the
	// expired answer a failed query falls back on, and that answer's
	// staleUntil.
	stale      []netip.Addr
	staleLimit time.Time
}

// New returns a Cache with opt; a zero field takes its default.
func New(opt Options) *Cache {
	if opt.ResolvConf == "" {
		opt.ResolvConf = "/etc/resolv.conf"
	}
	if opt.Hosts == "" {
		opt.Hosts = "/etc/hosts"
	}
	if opt.System == nil {
		opt.System = net.DefaultResolver
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.MaxInFlight <= 0 {
		opt.MaxInFlight = 256
	}
	if opt.NegativeTTL <= 0 {
		opt.NegativeTTL = DefaultNegativeTTL
	}
	if opt.MaxTTL <= 0 {
		opt.MaxTTL = 5 * time.Minute
	}
	return &Cache{
		opt:     opt,
		conf:    &watched[sysConf]{path: opt.ResolvConf, parse: parseResolvConf},
		hosts:   &watched[map[string][]netip.Addr]{path: opt.Hosts, parse: parseHosts},
		slots:   make(chan struct{}, opt.MaxInFlight),
		now:     time.Now,
		entries: map[string]*entry{},
	}
}

// Len is how many names the cache holds (answers and names in flight).
func (c *Cache) Len() int { return int(c.size.Load()) }

// notFound is the error of a name that does not exist or has no address.
func notFound(host string) error {
	return &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// LookupNetIP returns the addresses of host (a normalised name: lower
// case, no trailing dot) of the network "ip", "ip4" or "ip6". The slice is
// shared: callers must not modify it.
func (c *Cache) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, err := c.lookup(ctx, host)
	if err != nil || network == "ip" {
		return addrs, err
	}
	want4 := network == "ip4"
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() == want4 {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, notFound(host)
	}
	return out, nil
}

// Peek answers host without waiting, from /etc/hosts, a reserved name or
// a fresh cached answer; ok false means a query would be needed (or host
// is left to the system resolver). The event loops use it: they must
// never wait for DNS.
func (c *Cache) Peek(host string) (addrs []netip.Addr, ok bool, err error) {
	if host == "" || len(host) > 253 {
		return nil, false, nil
	}
	now := c.now()
	if addrs, ok, err := c.atHand(host, now); ok {
		return addrs, true, err
	}
	c.mu.Lock()
	e := c.entries[host]
	c.mu.Unlock()
	if e == nil {
		return nil, false, nil
	}
	select {
	case <-e.done:
		if now.Before(e.expires) {
			c.observe(ResultHit)
			c.prefetch(host, e, now)
			return e.addrs, true, e.err
		}
	default:
	}
	return nil, false, nil
}

// atHand answers what needs no cache and no query: a name under .invalid
// (not found, RFC 6761) and a name in /etc/hosts.
func (c *Cache) atHand(host string, now time.Time) (addrs []netip.Addr, ok bool, err error) {
	if host == "invalid" || strings.HasSuffix(host, ".invalid") {
		c.observe(ResultHosts)
		return nil, true, notFound(host)
	}
	if a := c.hosts.get(now)[host]; len(a) > 0 {
		c.observe(ResultHosts)
		return a, true, nil
	}
	return nil, false, nil
}

func (c *Cache) observe(result string) {
	if c.opt.Observe != nil {
		c.opt.Observe(result)
	}
}

func (c *Cache) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" || len(host) > 253 {
		return nil, notFound(host)
	}
	now := c.now()
	if addrs, ok, err := c.atHand(host, now); ok {
		return addrs, err
	}
	if !strings.Contains(host, ".") || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		c.observe(ResultSystem)
		return c.opt.System.LookupNetIP(ctx, "ip", host)
	}
	c.mu.Lock()
	e := c.entries[host]
	if e != nil {
		select {
		case <-e.done:
			if now.Before(e.expires) {
				c.mu.Unlock()
				c.observe(ResultHit)
				c.prefetch(host, e, now)
				return e.addrs, e.err
			}
			c.drop(host, e)
			old := e
			e = &entry{done: make(chan struct{})}
			if old.err == nil && len(old.addrs) > 0 && now.Before(old.staleUntil) {
				e.stale, e.staleLimit = old.addrs, old.staleUntil
			}
		default:
			c.mu.Unlock()
			return c.wait(ctx, e, ResultShared)
		}
	} else {
		e = &entry{done: make(chan struct{})}
	}
	kept := c.insert(host, e)
	c.mu.Unlock()

	// The query runs on its own goroutine with a deadline of its own, so a
	// connection that gives up does not cancel the answer others wait for.
	go c.fill(host, e, kept, time.Now().Add(c.opt.Timeout))
	return c.wait(ctx, e, "")
}

// wait returns e's answer, or ctx's error if ctx ends first. When e has a
// stale answer to fall back on, a wait longer than StaleAnswerWait is
// given that answer (the query goes on, for the next lookups).
func (c *Cache) wait(ctx context.Context, e *entry, result string) ([]netip.Addr, error) {
	var late <-chan time.Time
	if e.stale != nil {
		t := time.NewTimer(StaleAnswerWait)
		defer t.Stop()
		late = t.C
	}
	select {
	case <-e.done:
		if result != "" {
			c.observe(result)
		}
		return e.addrs, e.err
	case <-late:
		if result != "" { // the query's starter is counted by fill
			c.observe(ResultStale)
		}
		return e.stale, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// insert puts e in the table when there is room, making room by dropping
// expired answers, else other answers; a table full of names in flight
// keeps e out (it is still answered, just not kept). Called with mu held.
func (c *Cache) insert(host string, e *entry) bool {
	if c.opt.Size <= 0 {
		return false
	}
	if len(c.entries) >= c.opt.Size {
		// A sample (map order is random) of at most 64 names, so a table
		// full of names in flight costs a bounded scan: the first expired
		// answer, else the first answer.
		now := c.now()
		var victim string
		looked := 0
		for h, x := range c.entries {
			if looked++; looked > 64 {
				break
			}
			select {
			case <-x.done:
			default:
				continue
			}
			if !now.Before(x.expires) {
				victim = h
				break
			}
			if victim == "" {
				victim = h
			}
		}
		if victim == "" {
			return false
		}
		c.drop(victim, c.entries[victim])
	}
	c.entries[host] = e
	c.size.Store(int64(len(c.entries)))
	return true
}

// drop removes host if it still maps to e. Called with mu held.
func (c *Cache) drop(host string, e *entry) {
	if c.entries[host] == e {
		delete(c.entries, host)
		c.size.Store(int64(len(c.entries)))
	}
}

// fill runs the query for host and publishes the answer in e.
func (c *Cache) fill(host string, e *entry, kept bool, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ans, err := c.resolve(ctx, host)
	stale := err != nil && e.stale != nil
	switch {
	case stale:
		c.observe(ResultStale)
		e.addrs, e.ttl, e.staleUntil = e.stale, StaleTTL, e.staleLimit
		e.expires = c.now().Add(StaleTTL)
	case err != nil:
		c.observe(ResultFailed)
		c.set(e, host, ans, err)
	default:
		c.observe(ResultResolved)
		c.set(e, host, ans, err)
	}
	c.mu.Lock()
	if err != nil && !stale || e.ttl <= 0 {
		if kept {
			c.drop(host, e)
		}
	}
	close(e.done)
	c.mu.Unlock()
}

// set puts a query's outcome in e (not yet done): its addresses or error,
// and how long it may be kept.
func (c *Cache) set(e *entry, host string, ans answer, err error) {
	switch {
	case err != nil:
		e.err = err
	case ans.notFound:
		e.err = notFound(host)
	default:
		e.addrs = ans.addrs
	}
	e.ttl = min(ans.ttl, c.opt.MaxTTL)
	if ans.notFound {
		e.ttl = min(ans.ttl, c.opt.NegativeTTL)
	}
	e.expires = c.now().Add(e.ttl)
	if e.err == nil && e.ttl > 0 {
		e.staleUntil = e.expires.Add(c.opt.ServeStale)
	}
}

// prefetch asks the servers for host again, in the background, when a hit
// finds e (an answer with addresses, kept for at least MinPrefetchTTL) in
// the last tenth of its TTL: the new answer replaces e before it expires, so
// a name in use is never waited for. At most one per entry, and only when a
// query slot is free at once, and on no more than a quarter of the slots
// (a dead server holds each for the whole Timeout): prefetches never hold
// up a lookup a connection waits for, and never wait themselves (the event
// loops call them).
func (c *Cache) prefetch(host string, e *entry, now time.Time) {
	if e.err != nil || e.ttl < MinPrefetchTTL || e.expires.Sub(now) > e.ttl/10 || e.refresh.Load() {
		return
	}
	if c.prefetching.Add(1) > int32(max(1, cap(c.slots)/4)) {
		c.prefetching.Add(-1)
		return // enough running: a later hit tries again
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.prefetching.Add(-1)
		return // busy: a later hit tries again
	}
	if !e.refresh.CompareAndSwap(false, true) {
		<-c.slots
		c.prefetching.Add(-1)
		return
	}
	go c.refill(host, e, time.Now().Add(c.opt.Timeout))
}

// refill is a prefetch's query (its slot taken): a usable answer replaces
// old in the table, if old is still there; otherwise old stays until it
// expires.
func (c *Cache) refill(host string, old *entry, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ans, err := c.ask(ctx, host)
	<-c.slots
	c.prefetching.Add(-1)
	n := &entry{done: make(chan struct{})}
	c.set(n, host, ans, err)
	if err != nil || n.ttl <= 0 {
		c.observe(ResultPrefetchFailed)
		return
	}
	close(n.done)
	c.mu.Lock()
	if c.entries[host] == old {
		c.entries[host] = n
	}
	c.mu.Unlock()
	c.observe(ResultPrefetched)
}

// errBusy: MaxInFlight queries were running for the whole deadline.
var errBusy = errors.New("too many DNS queries in flight")

// resolve takes a query slot (within ctx) and asks the servers.
func (c *Cache) resolve(ctx context.Context, host string) (answer, error) {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return answer{}, errBusy
	}
	return c.ask(ctx, host)
}

// ask asks the servers, in order, each up to the configured attempts; the
// caller holds a query slot.
func (c *Cache) ask(ctx context.Context, host string) (answer, error) {
	conf := c.conf.get(c.now())
	servers := c.opt.Servers
	if len(servers) == 0 {
		servers = conf.servers
	}
	if len(servers) == 0 {
		// No nameserver anywhere: Go's resolver has its own fallbacks.
		return c.system(ctx, host)
	}
	var last error
	for range conf.attempts {
		for _, s := range servers {
			ans, err := exchange(ctx, s, host, conf.timeout)
			if err == nil {
				if ans.notFound && len(c.opt.Servers) == 0 && searchable(host, conf) {
					return c.system(ctx, host)
				}
				return ans, nil
			}
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				return answer{notFound: true}, nil
			}
			last = err
			if ctx.Err() != nil {
				return answer{}, fmt.Errorf("dns lookup of %s: %w", host, ctx.Err())
			}
		}
	}
	return answer{}, fmt.Errorf("dns lookup of %s: %w", host, last)
}

// searchable: Go's resolver would try host with the search list before
// (or instead of) as it is, so a name the servers do not know is asked
// again that way.
func searchable(host string, conf sysConf) bool {
	return len(conf.search) > 0 && strings.Count(host, ".") < conf.ndots
}

// system asks Go's resolver; its answers carry no TTL and are not kept,
// except "not found", kept as a negative answer.
func (c *Cache) system(ctx context.Context, host string) (answer, error) {
	addrs, err := c.opt.System.LookupNetIP(ctx, "ip", host)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return answer{notFound: true, ttl: c.opt.NegativeTTL}, nil
	}
	if err != nil {
		return answer{}, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return answer{addrs: addrs}, nil
}
