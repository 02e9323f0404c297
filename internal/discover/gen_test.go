package discover

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/rules"
)

// testHCL: a TikTok category, another category (its names are never
// candidates) and inline rule domains.
const testHCL = `
category "tiktok" {
  domains = ["tiktok.com", "tiktokcdn.com", "tiktokv.com", "byteoversea.com"]
}
category "cdn" {
  domains = ["known-cdn.example"]
}
segment "office" {
  sources = ["10.0.0.0/8"]
  default = "allow"
  rule "no-tiktok" {
    action     = "deny"
    categories = ["tiktok"]
  }
  rule "cdn" {
    action     = "allow"
    categories = ["cdn"]
  }
  rule "inline" {
    action  = "allow"
    domains = ["inline-known.example"]
  }
}
`

func loadTestConfig(tb testing.TB) *rules.Config {
	tb.Helper()
	cfg, diags := rules.Load("c.hcl", rules.Options{FS: fstest.MapFS{"c.hcl": {Data: []byte(testHCL)}}})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	return cfg
}

// The planted names: contacted within seconds after TikTok hits by most
// TikTok users, rarely otherwise.
var planted = []string{"api16-core.newtok.example", "p16-sign.tokimg.example"}

// Popular names: every source, all the time.
var popular = []string{"cdn.popular.example", "update.os.example", "fonts.common.example", "telemetry.vendor.example"}

// genSpec shapes a generated stream.
type genSpec struct {
	Seed     uint64
	Sources  int
	Duration time.Duration
	Popular  time.Duration // mean gap between a source's contacts of each popular name
	Random   int           // random-noise contacts per source
	Users    float64       // fraction of sources that use TikTok
	Sessions int           // mean TikTok sessions per user
}

var smallSpec = genSpec{Seed: 18, Sources: 200, Duration: 2 * time.Hour, Popular: 2 * time.Minute, Random: 60, Users: 0.75, Sessions: 5}

type genEvent struct {
	ev      *audit.Event
	written time.Time // when egress would write it: a tunnel is logged when it closes
}

// generate returns the events of spec, each stamped with its start and
// ordered by when it would be written (so the stream is not strictly in
// @timestamp order, as in real logs).
func generate(spec genSpec) []genEvent {
	rng := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	base := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var out []genEvent
	no := false
	add := func(src string, at time.Time, name string, deny bool, dur time.Duration) {
		ev := &audit.Event{Time: at, Listener: audit.ListenerProxy, SourceIP: src, SourcePort: 40000 + rng.IntN(20000),
			DestDomain: name, DestPort: 443, SNI: name, ECH: &no, Method: "CONNECT", Segment: "office"}
		if deny {
			ev.Action, ev.Reason, ev.Rule, ev.Ruleset, ev.Status = audit.ActionDeny, "rule", "no-tiktok", "office", 403
			dur = 0
		} else {
			ev.Action, ev.Reason, ev.Status, ev.Duration = audit.ActionAllow, "default", 200, dur
		}
		out = append(out, genEvent{ev: ev, written: at.Add(dur)})
	}
	ip := func(i int) string { return fmt.Sprintf("10.1.%d.%d", i/250, i%250+1) }
	tiktok := []string{"www.tiktok.com", "v16m.tiktokcdn.com", "api.tiktokv.com", "log.byteoversea.com"}
	// A "habit" name per group of sources, and a chat app every TikTok
	// user also uses all day (correlated with the users, not the sessions).
	for i := 0; i < spec.Sources; i++ {
		src := ip(i)
		for _, name := range popular {
			for t := time.Duration(rng.Int64N(int64(spec.Popular))); t < spec.Duration; t += time.Duration(rng.Int64N(2 * int64(spec.Popular))) {
				add(src, base.Add(t), name, false, time.Duration(rng.IntN(30))*time.Second)
			}
		}
		for range spec.Random {
			add(src, base.Add(time.Duration(rng.Int64N(int64(spec.Duration)))), fmt.Sprintf("rnd-%d.example", rng.IntN(5000)), false, time.Second)
		}
		habit := fmt.Sprintf("habit-%d.example", i%10)
		for t := time.Duration(0); t < spec.Duration; t += 10 * time.Minute {
			add(src, base.Add(t+time.Duration(rng.Int64N(int64(time.Minute)))), habit, false, 2*time.Second)
		}
		if rng.Float64() >= spec.Users {
			continue
		}
		for t := time.Duration(0); t < spec.Duration; t += 3 * time.Minute {
			add(src, base.Add(t+time.Duration(rng.Int64N(int64(time.Minute)))), "chat.messenger.example", false, 90*time.Second)
		}
		// Rare contacts of the planted names outside sessions.
		for _, p := range planted {
			if rng.IntN(4) == 0 {
				add(src, base.Add(time.Duration(rng.Int64N(int64(spec.Duration)))), p, false, time.Second)
			}
		}
		n := 1 + rng.IntN(2*spec.Sessions)
		for range n {
			start := base.Add(time.Duration(rng.Int64N(int64(spec.Duration))))
			hits := 1 + rng.IntN(4)
			at := start
			for range hits {
				// Hits are sometimes allowed (a monitor deployment): logged
				// at close, so written after what followed them.
				deny := rng.IntN(3) > 0
				add(src, at, tiktok[rng.IntN(len(tiktok))], deny, time.Duration(30+rng.IntN(120))*time.Second)
				if rng.Float64() < 0.8 {
					add(src, at.Add(time.Duration(1+rng.IntN(4))*time.Second), planted[0], false, 5*time.Second)
				}
				if rng.Float64() < 0.6 {
					add(src, at.Add(time.Duration(2+rng.IntN(7))*time.Second), planted[1], false, 20*time.Second)
				}
				// A listed name and an IP literal also follow the hits:
				// never candidates.
				if rng.Float64() < 0.7 {
					add(src, at.Add(3*time.Second), "img.known-cdn.example", false, time.Second)
					add(src, at.Add(4*time.Second), "203.0.113.7", false, time.Second)
					add(src, at.Add(5*time.Second), "inline-known.example", false, time.Second)
				}
				at = at.Add(time.Duration(5+rng.IntN(40)) * time.Second)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b genEvent) int { return a.written.Compare(b.written) })
	return out
}

// encode writes events as ECS lines; with files > 1 they are dealt to files
// at random (several proxy instances), each file in write order.
func encode(events []genEvent, files int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	enc, _ := audit.NewEncoder("ecs", "test")
	out := make([][]byte, files)
	for _, g := range events {
		i := rng.IntN(files)
		out[i] = append(enc.Encode(out[i], g.ev), '\n')
	}
	return out
}

func inputs(files [][]byte) []Input {
	var in []Input
	for i, f := range files {
		in = append(in, Input{Name: fmt.Sprintf("events-%d.jsonl", i), R: bytes.NewReader(f)})
	}
	return in
}
