package feeds_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/feeds"
	"github.com/egress-proxy/egress/internal/rules"
	"github.com/egress-proxy/egress/internal/upstream"
)

// BenchmarkUpdate: one full update of a 100,000-name list (about 2 MB) from a
// loopback HTTPS server: fetch, the real list parser, the shrink guard and the
// atomic cache write. Each iteration serves a different copy (no 304).
func BenchmarkUpdate(b *testing.B) {
	var lists [2]string
	for v := range lists {
		var sb strings.Builder
		for i := 0; i < 100_000; i++ {
			fmt.Fprintf(&sb, "host-%d-%d.feed.example\n", v, i)
		}
		lists[v] = sb.String()
	}
	n := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(lists[n%2]))
		n++
	}))
	defer srv.Close()
	dir := b.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	u := "https://example.com:" + srv.URL[strings.LastIndexByte(srv.URL, ':')+1:] + "/l.txt"
	d := &upstream.Dialer{Hosts: map[string]netip.Addr{"example.com": netip.MustParseAddr("127.0.0.1")},
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Timeout: 5 * time.Second}
	f := &feeds.Fetcher{Dialer: func() *upstream.Dialer { return d }, Count: rules.CountList}
	s := &feeds.Spec{Name: "b", URL: u, Refresh: time.Hour, Timeout: 30 * time.Second, MaxBytes: feeds.DefaultMaxBytes,
		MaxShrink: 0.5, CAFile: ca, CacheFile: feeds.CacheFile(dir, u)}
	b.ReportAllocs()
	b.SetBytes(int64(len(lists[0])))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if o := f.Update(context.Background(), s); o.Result != feeds.Success || o.Entries != 100_000 {
			b.Fatalf("%+v", o)
		}
	}
}
