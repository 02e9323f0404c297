package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/feeds"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
)

// feedRetry caps the wait after a failed update: a feed that failed is tried
// again after its refresh or this, whichever is shorter.
const feedRetry = time.Minute

// feedLoops owns one refresh goroutine per configured feed (SPEC §10.3). A
// loop fetches through the upstream dialer in force; a success that changed
// the cached copy signals changed, and the run loop reloads the configuration
// exactly as for an edited list file (so only the category's list changes,
// and enforce_on_reload cuts what it now denies). A failure is counted and
// logged and never signals: the running list stays.
//
// sync, after every load, keeps the loops of unchanged feeds running, stops
// those of removed or changed feeds and starts the new ones; stop ends all.
type feedLoops struct {
	log     *slog.Logger
	m       *metrics.Metrics
	fetch   *feeds.Fetcher
	changed chan struct{} // capacity 1: a pending reload request

	mu    sync.Mutex
	loops map[string]context.CancelFunc // by feeds.Spec.Key
	wg    sync.WaitGroup
}

func newFeedLoops(store *active.Store, m *metrics.Metrics, log *slog.Logger) *feedLoops {
	return &feedLoops{log: log, m: m, changed: make(chan struct{}, 1), loops: map[string]context.CancelFunc{},
		fetch: &feeds.Fetcher{
			Dialer: func() *upstream.Dialer { return store.Load().Dialer },
			Count:  rules.CountList,
		}}
}

// sync matches the running loops to cfg's feeds and publishes their metrics.
func (l *feedLoops) sync(cfg *rules.Config) {
	states := make([]metrics.FeedState, 0, len(cfg.Feeds))
	want := map[string]*rules.Feed{}
	for _, f := range cfg.Feeds {
		want[f.Key()] = f
		st := metrics.FeedState{Name: f.Name, Entries: f.Entries}
		if t, ok := feeds.CacheAge(&f.Spec); ok {
			st.LastSuccess = t
		}
		states = append(states, st)
	}
	l.m.SetFeeds(states)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, cancel := range l.loops {
		if want[k] == nil {
			cancel()
			delete(l.loops, k)
		}
	}
	for k, f := range want {
		if l.loops[k] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.loops[k] = cancel
		spec := f.Spec
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.loop(ctx, &spec) }()
	}
}

// stop ends every loop and waits for them (an update in flight is cut by its
// context).
func (l *feedLoops) stop() {
	l.mu.Lock()
	for k, cancel := range l.loops {
		cancel()
		delete(l.loops, k)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// firstWait is how long a new loop waits before its first update: the rest of
// the refresh interval since the cached copy was last confirmed, so a restart
// or a reload does not refetch every feed at once; at once without a copy.
func firstWait(s *feeds.Spec, now time.Time) time.Duration {
	t, ok := feeds.CacheAge(s)
	if !ok {
		return 0
	}
	if d := s.Refresh - now.Sub(t); d > 0 {
		return d
	}
	return 0
}

func (l *feedLoops) loop(ctx context.Context, s *feeds.Spec) {
	timer := time.NewTimer(firstWait(s, time.Now()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		o := l.fetch.Update(ctx, s)
		if ctx.Err() != nil {
			return // stopped during the update: not a feed failure
		}
		l.m.FeedUpdated(s.Name, o.Result, o.Checked)
		next := s.Refresh
		switch {
		case o.Result == feeds.Failure:
			l.log.Warn("feed update failed; the last good list stays in force", "feed", s.Name, "category", s.Category,
				"url", feeds.Redact(s.URL), "err", o.Err.Error())
			next = min(next, feedRetry)
		case o.Changed:
			l.log.Info("feed updated", "feed", s.Name, "category", s.Category, "entries", o.Entries, "previous", o.Previous)
			select {
			case l.changed <- struct{}{}:
			default: // a reload is already pending; it will read this copy too
			}
		default:
			l.log.Debug("feed current", "feed", s.Name, "result", o.Result, "entries", o.Entries)
		}
		if o.Err != nil && o.Result != feeds.Failure {
			l.log.Warn("feed cache", "feed", s.Name, "err", o.Err.Error())
		}
		timer.Reset(next)
	}
}
