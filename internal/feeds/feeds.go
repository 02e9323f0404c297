// Package feeds owns live list feeds (SPEC §10.3): fetching a category's list
// over HTTPS through the process's own upstream rules, the guards a new copy
// must pass (size cap, timeout, pinned sha256, detached Ed25519 signature,
// parse, empty list, shrink), and the last-good copy on disk with its
// validators (ETag, Last-Modified).
//
// The package never touches the configuration in force: Update writes the
// cache when, and only when, a new copy passed every guard, and reports what
// happened. The service reloads the configuration after a change, and the
// rules loader reads the cached copy as one of the category's lists. A failed
// update leaves the cache, and so the enforced list, as it was.
//
// Ownership: Update builds its own http.Transport per call (keep-alives off),
// so no connection outlives the call; the body is read into one buffer of at
// most Spec.MaxBytes+1 bytes that the caller owns after the call.
package feeds

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/hostname"
	"github.com/egress-proxy/egress/internal/upstream"
)

// Defaults of the optional feed attributes.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultMaxBytes  = 16 << 20
	DefaultMaxShrink = 0.5
	DefaultCacheDir  = "/var/lib/egress/feeds"
	MinRefresh       = time.Second
	// maxSignatureBytes caps a detached signature download.
	maxSignatureBytes = 4096
	maxRedirects      = 3
)

// Results, the values of egress_feed_updates_total's result label.
const (
	Success     = "success"
	NotModified = "not_modified"
	Failure     = "failure"
)

// Spec is one feed of a category, as configured.
type Spec struct {
	Category string
	Name     string // metrics label: "<category>/<n>" or the feed's name attribute
	URL      string
	Refresh  time.Duration
	Timeout  time.Duration
	MaxBytes int64
	// MaxShrink is the largest fraction of the previous list's entries a new
	// copy may lose (0.5: a copy with fewer than half the entries is refused;
	// 1: no guard).
	MaxShrink    float64
	SHA256       []byte            // pinned digest of the whole body, or nil
	PublicKey    ed25519.PublicKey // verify a detached signature, or nil
	SignatureURL string            // where the signature is (URL + ".sig" by default)
	CAFile       string            // PEM roots for the feed server; system roots when ""
	CacheFile    string            // the last good copy
}

// MetaFile is where the cache's validators and times are kept.
func (s *Spec) MetaFile() string { return s.CacheFile + ".meta" }

// Key identifies a feed's full configuration: a change of any attribute is a
// different feed for the refresh loops.
func (s *Spec) Key() string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d\x00%d\x00%g\x00%x\x00%x\x00%s\x00%s\x00%s",
		s.Category, s.Name, s.URL, s.Refresh, s.Timeout, s.MaxBytes, s.MaxShrink, s.SHA256, []byte(s.PublicKey), s.SignatureURL, s.CAFile, s.CacheFile)
}

// CacheFile names the cache file of url in dir: a hash of the URL, so two
// feeds never share a file and the name holds nothing of the URL's query.
func CacheFile(dir, rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return filepath.Join(dir, "feed-"+hex.EncodeToString(sum[:10])+".list")
}

// Meta is what is stored beside the cached copy.
type Meta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Checked      time.Time `json:"checked"` // last success or not_modified
	Changed      time.Time `json:"changed"` // last time a new copy was written
	Entries      int       `json:"entries"`
	SHA256       string    `json:"sha256,omitempty"` // of the cached copy
}

// ReadMeta reads the meta file of s (zero Meta and an error if absent).
func ReadMeta(s *Spec) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(s.MetaFile())
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	return m, err
}

// CacheAge says when the cached copy of s was last confirmed current: the
// meta's Checked time, else the cache file's modification time. ok is false
// when there is no cached copy.
func CacheAge(s *Spec) (t time.Time, ok bool) {
	st, err := os.Stat(s.CacheFile)
	if err != nil {
		return time.Time{}, false
	}
	if m, err := ReadMeta(s); err == nil && !m.Checked.IsZero() && m.URL == s.URL {
		return m.Checked, true
	}
	return st.ModTime(), true
}

// Outcome is the result of one Update.
type Outcome struct {
	Result  string // Success, NotModified or Failure
	Entries int    // distinct names of the copy now cached (0 if none)
	// Previous is the distinct names of the copy cached before a Success.
	Previous int
	Changed  bool  // Success wrote a copy that differs from the previous one
	Err      error // why a Failure failed
	Checked  time.Time
}

// Fetcher runs updates.
type Fetcher struct {
	// Dialer returns the upstream dialer in force: the feed host is resolved
	// and checked by it (upstream.hosts, private-destination refusal) and the
	// checked address is dialed.
	Dialer func() *upstream.Dialer
	// Count parses a list (the same parser as list files) and returns its
	// distinct entries; an error is a parse failure.
	Count func(name string, body []byte) (int, error)
	Now   func() time.Time
}

// Update fetches s once, and on a copy that passes every guard writes it to
// the cache. It never removes or alters the cached copy otherwise.
func (f *Fetcher) Update(ctx context.Context, s *Spec) Outcome {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(format string, args ...any) Outcome {
		return Outcome{Result: Failure, Err: fmt.Errorf(format, args...)}
	}

	old, oldErr := os.ReadFile(s.CacheFile)
	haveCache := oldErr == nil
	meta, metaErr := ReadMeta(s)
	if metaErr != nil || meta.URL != s.URL {
		meta = Meta{URL: s.URL}
	}
	if haveCache {
		// The meta describes the cached copy only if it was written with
		// it: a copy replaced by hand is counted again.
		sum := sha256.Sum256(old)
		if meta.SHA256 != hex.EncodeToString(sum[:]) {
			meta.Entries, _ = f.Count(s.CacheFile, old)
			meta.SHA256 = hex.EncodeToString(sum[:])
			meta.ETag, meta.LastModified = "", "" // validators of another copy
		}
	}
	client, err := f.client(s)
	if err != nil {
		return fail("%v", err)
	}
	defer client.CloseIdleConnections()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return fail("%v", err)
	}
	req.Header.Set("User-Agent", "egress-feed/1")
	if haveCache {
		if meta.ETag != "" {
			req.Header.Set("If-None-Match", meta.ETag)
		}
		if meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", meta.LastModified)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail("fetch: %w", redactErr(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && haveCache:
		meta.Checked = now()
		_ = writeMeta(s, meta) // the copy is unchanged; a lost meta only costs a full fetch
		return Outcome{Result: NotModified, Entries: meta.Entries, Checked: meta.Checked}
	case resp.StatusCode != http.StatusOK:
		return fail("fetch: HTTP status %s", resp.Status)
	}
	max := s.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	if resp.ContentLength > max {
		return fail("fetch: body of %d bytes is larger than max_bytes %d", resp.ContentLength, max)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength) + 1) // <= max, checked above
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, max+1))
	body := buf.Bytes()
	if err != nil {
		return fail("fetch: reading body: %v", err)
	}
	if int64(len(body)) > max {
		return fail("fetch: body is larger than max_bytes %d", max)
	}
	if s.SHA256 != nil {
		sum := sha256.Sum256(body)
		if !bytes.Equal(sum[:], s.SHA256) {
			return fail("sha256 mismatch: body is %x, pinned %x", sum, s.SHA256)
		}
	}
	if s.PublicKey != nil {
		if err := f.verify(ctx, client, s, body); err != nil {
			return fail("signature: %v", err)
		}
	}
	n, err := f.Count(s.URL, body)
	if err != nil {
		return fail("parse: %v", err)
	}
	if n == 0 {
		return fail("empty list: no entries")
	}
	prev := 0
	if haveCache {
		prev = meta.Entries
	}
	if prev > 0 && s.MaxShrink < 1 && float64(n) < float64(prev)*(1-s.MaxShrink) {
		return fail("shrink guard: %d entries, the last good list has %d (max_shrink %g)", n, prev, s.MaxShrink)
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	changed := !haveCache || meta.SHA256 != digest
	if changed {
		if err := writeAtomic(s.CacheFile, body); err != nil {
			return fail("cache: %v", err)
		}
		meta.Changed = now()
	}
	meta.SHA256 = digest
	meta.ETag = resp.Header.Get("ETag")
	meta.LastModified = resp.Header.Get("Last-Modified")
	meta.Checked = now()
	meta.Entries = n
	out := Outcome{Result: Success, Entries: n, Previous: prev, Changed: changed, Checked: meta.Checked}
	if err := writeMeta(s, meta); err != nil {
		out.Err = fmt.Errorf("cache meta: %v", err)
	}
	return out
}

// verify fetches the detached signature and checks it over body.
func (f *Fetcher) verify(ctx context.Context, client *http.Client, s *Spec, body []byte) error {
	u := s.SignatureURL
	if u == "" {
		u = s.URL + ".sig"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "egress-feed/1")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch: %w", redactErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch: HTTP status %s", resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxSignatureBytes+1))
	if err != nil {
		return fmt.Errorf("fetch: %v", err)
	}
	if len(raw) > maxSignatureBytes {
		return errors.New("signature file too large")
	}
	sig, err := DecodeSignature(raw)
	if err != nil {
		return err
	}
	if !ed25519.Verify(s.PublicKey, body, sig) {
		return errors.New("Ed25519 signature does not verify over the body with the configured public_key")
	}
	return nil
}

// DecodeSignature reads a detached signature: 64 raw bytes, or their base64
// (standard or URL alphabet, padding optional) or hex form, surrounding
// white space ignored.
func DecodeSignature(raw []byte) ([]byte, error) {
	if len(raw) == ed25519.SignatureSize {
		return raw, nil
	}
	s := strings.TrimSpace(string(raw))
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == ed25519.SignatureSize {
			return b, nil
		}
	}
	return nil, errors.New("not an Ed25519 signature (64 bytes, raw, base64 or hex)")
}

// client builds the HTTP client of one update: every connection is resolved
// and checked by the upstream dialer in force and dials exactly the checked
// address; TLS is verified (against ca_file, else the system roots); no
// environment proxy; redirects only to https, at most maxRedirects.
func (f *Fetcher) client(s *Spec) (*http.Client, error) {
	d := f.Dialer()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", s.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            func(ctx context.Context, _, addr string) (net.Conn, error) { return dialChecked(ctx, d, addr) },
		TLSClientConfig:        tc,
		DisableKeepAlives:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     false,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s: only https", Redact(req.URL.Redacted()))
		}
		return nil
	}}, nil
}

// dialChecked resolves host with the upstream dialer (upstream.hosts first;
// refused destinations fail with upstream.ErrPrivate) and dials the address
// it checked.
func dialChecked(ctx context.Context, d *upstream.Dialer, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	name, ip, err := hostname.Normalize(host)
	if err != nil {
		return nil, fmt.Errorf("host %q: %v", host, err)
	}
	a, err := d.Resolve(ctx, name, ip)
	if err != nil {
		return nil, err
	}
	return d.Dial(ctx, a, uint16(port))
}

// Redact drops the query and fragment of a feed URL, for logs, messages and
// metrics: a query may carry an access token.
func Redact(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// redactErr removes the URL's query from a client error.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = Redact(ue.URL)
	}
	return err
}

// CheckURL validates a feed URL: https, a host, no user info.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" {
		return errors.New("a feed URL must be https")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("a feed URL needs a host")
	}
	if u.User != nil {
		return errors.New("credentials in a feed URL would be logged; remove them")
	}
	return nil
}

// writeAtomic writes data to name through a temporary file in the same
// directory, synced and renamed, so a reader sees the old or the new copy.
func writeAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func writeMeta(s *Spec, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.MetaFile(), append(b, '\n'))
}
