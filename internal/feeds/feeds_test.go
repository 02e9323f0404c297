package feeds

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-proxy/egress/internal/upstream"
)

// feedServer is a local HTTPS feed: the list at /list.txt (with an ETag), its
// signature at /list.txt.sig.
type feedServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     string
	sig      string
	status   int // non-zero: answer this status instead
	requests atomic.Int32
	caFile   string
}

func newFeedServer(t *testing.T, body string) *feedServer {
	t.Helper()
	fs := &feedServer{body: body}
	fs.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.requests.Add(1)
		fs.mu.Lock()
		body, sig, status := fs.body, fs.sig, fs.status
		fs.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		if r.URL.Path == "/list.txt.sig" {
			fmt.Fprint(w, sig)
			return
		}
		etag := fmt.Sprintf("%q", fmt.Sprintf("%x", sha256.Sum256([]byte(body)))[:16])
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(fs.Close)
	fs.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fs.Certificate().Raw})
	if err := os.WriteFile(fs.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return fs
}

func (fs *feedServer) set(body, sig string, status int) {
	fs.mu.Lock()
	fs.body, fs.sig, fs.status = body, sig, status
	fs.mu.Unlock()
}

// url is the feed's URL under the name example.com (in the test
// certificate), which the dialer maps to the server's loopback address.
func (fs *feedServer) url() string {
	return "https://example.com:" + fs.URL[strings.LastIndexByte(fs.URL, ':')+1:] + "/list.txt"
}

func loopbackDialer(allow bool) *upstream.Dialer {
	d := &upstream.Dialer{Hosts: map[string]netip.Addr{"example.com": netip.MustParseAddr("127.0.0.1")}, Timeout: 5 * time.Second}
	if allow {
		d.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}
	return d
}

// countLines is a stand-in for the rules list parser: one name per line,
// "bad" lines fail.
func countLines(_ string, body []byte) (int, error) {
	seen := map[string]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "bad") {
			return 0, errors.New("unrecognised line " + l)
		}
		seen[l] = true
	}
	return len(seen), nil
}

func newSpec(t *testing.T, fs *feedServer) *Spec {
	return &Spec{Category: "intel", Name: "intel/1", URL: fs.url(), Refresh: time.Hour, Timeout: 5 * time.Second,
		MaxBytes: 1 << 20, MaxShrink: 0.5, CAFile: fs.caFile, CacheFile: CacheFile(t.TempDir(), fs.url())}
}

func fetcher(allow bool) *Fetcher {
	d := loopbackDialer(allow)
	return &Fetcher{Dialer: func() *upstream.Dialer { return d }, Count: countLines}
}

func mustCache(t *testing.T, s *Spec, want string) {
	t.Helper()
	b, err := os.ReadFile(s.CacheFile)
	if err != nil {
		t.Fatalf("cache: %v", err)
	}
	if string(b) != want {
		t.Fatalf("cache holds %q, want %q", b, want)
	}
}

func TestUpdateNotModifiedAndChange(t *testing.T) {
	fs := newFeedServer(t, "a.example\nb.example\nc.example\n")
	s, f := newSpec(t, fs), fetcher(true)
	o := f.Update(context.Background(), s)
	if o.Result != Success || !o.Changed || o.Entries != 3 || o.Err != nil {
		t.Fatalf("first update: %+v", o)
	}
	mustCache(t, s, "a.example\nb.example\nc.example\n")
	if m, err := ReadMeta(s); err != nil || m.ETag == "" || m.Entries != 3 {
		t.Fatalf("meta %+v %v", m, err)
	}
	o = f.Update(context.Background(), s)
	if o.Result != NotModified || o.Entries != 3 {
		t.Fatalf("second update (same ETag): %+v", o)
	}
	fs.set("a.example\nb.example\nc.example\nd.example\n", "", 0)
	o = f.Update(context.Background(), s)
	if o.Result != Success || !o.Changed || o.Entries != 4 {
		t.Fatalf("changed list: %+v", o)
	}
	mustCache(t, s, "a.example\nb.example\nc.example\nd.example\n")
	if age, ok := CacheAge(s); !ok || time.Since(age) > time.Minute {
		t.Fatalf("cache age %v %v", age, ok)
	}
}

// TestFailuresKeepLastGood: outage, error status, parse error, empty list,
// shrink, oversize: each is a failure and the cached copy stays byte for byte.
func TestFailuresKeepLastGood(t *testing.T) {
	good := "a.example\nb.example\nc.example\nd.example\n"
	fs := newFeedServer(t, good)
	s, f := newSpec(t, fs), fetcher(true)
	s.MaxBytes = 100
	if o := f.Update(context.Background(), s); o.Result != Success {
		t.Fatalf("seed: %+v", o)
	}
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"error status", "", 503, "503"},
		{"parse error", "a.example\nbad line\n", 0, "parse"},
		{"empty", "# nothing\n", 0, "empty"},
		{"shrink", "a.example\n", 0, "shrink guard"},
		{"oversize", strings.Repeat("x.example\n", 20), 0, "max_bytes"},
	}
	for _, c := range cases {
		fs.set(c.body, "", c.status)
		o := f.Update(context.Background(), s)
		if o.Result != Failure || o.Err == nil || !strings.Contains(o.Err.Error(), c.want) {
			t.Errorf("%s: %+v, want a failure mentioning %q", c.name, o, c.want)
		}
		mustCache(t, s, good)
	}
	// Shrinking by exactly the allowed fraction passes.
	fs.set("a.example\nb.example\n", "", 0)
	if o := f.Update(context.Background(), s); o.Result != Success || o.Entries != 2 {
		t.Fatalf("shrink within the guard: %+v", o)
	}
	// Outage: the server is gone.
	fs.Close()
	o := f.Update(context.Background(), s)
	if o.Result != Failure || !strings.Contains(o.Err.Error(), "fetch") {
		t.Fatalf("outage: %+v", o)
	}
	mustCache(t, s, "a.example\nb.example\n")
}

func TestSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	body := "a.example\nb.example\n"
	fs := newFeedServer(t, body)
	s, f := newSpec(t, fs), fetcher(true)
	s.PublicKey = pub
	fs.set(body, base64.StdEncoding.EncodeToString(ed25519.Sign(otherPriv, []byte(body))), 0)
	o := f.Update(context.Background(), s)
	if o.Result != Failure || !strings.Contains(o.Err.Error(), "signature") {
		t.Fatalf("bad signature: %+v", o)
	}
	if _, err := os.Stat(s.CacheFile); !os.IsNotExist(err) {
		t.Fatalf("a copy with a bad signature was cached: %v", err)
	}
	fs.set(body, base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(body)))+"\n", 0)
	if o := f.Update(context.Background(), s); o.Result != Success {
		t.Fatalf("good signature: %+v", o)
	}
	// A new body with the old signature is refused; the cache keeps the old body.
	fs.set("a.example\nb.example\nevil.example\n", base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(body))), 0)
	if o := f.Update(context.Background(), s); o.Result != Failure {
		t.Fatalf("stale signature over a new body: %+v", o)
	}
	mustCache(t, s, body)
}

func TestSHA256Pin(t *testing.T) {
	body := "a.example\n"
	fs := newFeedServer(t, body)
	s, f := newSpec(t, fs), fetcher(true)
	sum := sha256.Sum256([]byte("something else\n"))
	s.SHA256 = sum[:]
	if o := f.Update(context.Background(), s); o.Result != Failure || !strings.Contains(o.Err.Error(), "sha256") {
		t.Fatalf("pin mismatch: %+v", o)
	}
	sum = sha256.Sum256([]byte(body))
	s.SHA256 = sum[:]
	if o := f.Update(context.Background(), s); o.Result != Success {
		t.Fatalf("pin match: %+v", o)
	}
}

// TestPrivateDestinationRefused: the feed host maps to loopback, which the
// dialer refuses without allow_private: no request reaches the server.
func TestPrivateDestinationRefused(t *testing.T) {
	fs := newFeedServer(t, "a.example\n")
	s, f := newSpec(t, fs), fetcher(false)
	s.URL += "?token=secret"
	o := f.Update(context.Background(), s)
	if o.Result != Failure || !errors.Is(o.Err, upstream.ErrPrivate) || !strings.Contains(o.Err.Error(), "prohibited") {
		t.Fatalf("refused destination: %+v", o)
	}
	if strings.Contains(o.Err.Error(), "secret") {
		t.Fatalf("the error shows the URL's query: %v", o.Err)
	}
	if n := fs.requests.Load(); n != 0 {
		t.Fatalf("the feed server saw %d requests", n)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	fs := newFeedServer(t, "a.example\n")
	s, f := newSpec(t, fs), fetcher(true)
	s.CAFile = ""
	if o := f.Update(context.Background(), s); o.Result != Failure || !strings.Contains(o.Err.Error(), "certificate") {
		t.Fatalf("untrusted server: %+v", o)
	}
}

func TestDecodeSignature(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 64)
	for _, in := range [][]byte{raw, []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), []byte(fmt.Sprintf("%x", raw))} {
		if got, err := DecodeSignature(in); err != nil || !bytes.Equal(got, raw) {
			t.Errorf("DecodeSignature(%q) = %x, %v", in, got, err)
		}
	}
	if _, err := DecodeSignature([]byte("short")); err == nil {
		t.Error("short signature accepted")
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"http://a.example/x", "https:///x", "https://u:p@a.example/x", "ftp://a"} {
		if CheckURL(u) == nil {
			t.Errorf("CheckURL(%q) accepted", u)
		}
	}
	if err := CheckURL("https://a.example/x.txt?k=1"); err != nil {
		t.Error(err)
	}
}

func FuzzDecodeSignature(f *testing.F) {
	f.Add([]byte("c2ln"))
	f.Add(bytes.Repeat([]byte{1}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		if sig, err := DecodeSignature(b); err == nil && len(sig) != ed25519.SignatureSize {
			t.Fatalf("signature of %d bytes", len(sig))
		}
	})
}

// TestCacheReplacedByHand: an operator who replaces the cached copy (to get
// past the shrink guard) is judged against that copy, not the old meta, and
// its validators are not sent for it.
func TestCacheReplacedByHand(t *testing.T) {
	fs := newFeedServer(t, "a.example\nb.example\nc.example\nd.example\n")
	s, f := newSpec(t, fs), fetcher(true)
	if o := f.Update(context.Background(), s); o.Result != Success {
		t.Fatalf("seed: %+v", o)
	}
	fs.set("a.example\n", "", 0)
	if o := f.Update(context.Background(), s); o.Result != Failure {
		t.Fatalf("shrink: %+v", o)
	}
	if err := os.WriteFile(s.CacheFile, []byte("a.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := f.Update(context.Background(), s)
	if o.Result != Success || o.Changed || o.Entries != 1 {
		t.Fatalf("after the hand copy: %+v", o)
	}
	if m, _ := ReadMeta(s); m.Entries != 1 {
		t.Fatalf("meta %+v", m)
	}
}
