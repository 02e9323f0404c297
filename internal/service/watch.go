package service

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/egress-proxy/egress/internal/rules"
)

// watcher notices a change of any file a configuration read, or a new or
// removed .hcl file in its directory. It compares device, inode, size and
// modification time after following symlinks, so a Kubernetes ConfigMap
// update (an atomic swap of the "..data" link) is seen like an edit.
//
// A stat change alone is not a reason to reload: the files' content is then
// hashed, and a content that is the running configuration's, or that already
// failed to load (by SIGHUP or by the poll, see failed), is not reloaded
// again. So one broken edit is one failed reload, however many poll intervals
// or touches follow, until the content changes.
type watcher struct {
	cfg  *rules.Config
	seen string // stat fingerprint last looked at

	good [sha256.Size]byte // content of the running configuration
	bad  [sha256.Size]byte // content that last failed to load
	// pending is the content changed saw, when it reported a change: what the
	// caller is about to load.
	pending    [sha256.Size]byte
	hasPending bool
	hasBad     bool
}

func newWatcher(cfg *rules.Config) *watcher {
	w := &watcher{cfg: cfg}
	w.seen = w.fingerprint()
	w.good = w.contentHash()
	return w
}

// files is every file the configuration depends on, sorted: the files it
// read and the *.hcl files of its directory.
func (w *watcher) files() []string {
	if strings.HasPrefix(w.cfg.Source, "<") {
		return nil // embedded: nothing to watch
	}
	files := append([]string(nil), w.cfg.Files...)
	if st, err := os.Stat(w.cfg.Source); err == nil && st.IsDir() {
		m, _ := filepath.Glob(filepath.Join(w.cfg.Source, "*.hcl"))
		files = append(files, m...)
	}
	sort.Strings(files)
	return files
}

func (w *watcher) fingerprint() string {
	var b strings.Builder
	for _, f := range w.files() {
		b.WriteString(f)
		st, err := os.Stat(f)
		if err != nil {
			b.WriteString(" missing\n")
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			b.WriteString(" " + itoa(uint64(sys.Dev)) + ":" + itoa(sys.Ino))
		}
		b.WriteString(" " + itoa(uint64(st.Size())) + " " + itoa(uint64(st.ModTime().UnixNano())) + "\n")
	}
	return b.String()
}

// contentHash hashes the names and contents of files() (a missing or
// unreadable file hashes as such). It reads the files: call it only when the
// fingerprint changed, or once per load.
func (w *watcher) contentHash() [sha256.Size]byte {
	h := sha256.New()
	for _, f := range w.files() {
		io.WriteString(h, f+"\x00")
		fh, err := os.Open(f)
		if err != nil {
			io.WriteString(h, "missing\x00")
			continue
		}
		n, err := io.Copy(h, fh)
		fh.Close()
		if err != nil {
			io.WriteString(h, "unreadable\x00")
		}
		io.WriteString(h, "\x00"+itoa(uint64(n))+"\x00")
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// changed reports whether the files hold a content that should be loaded:
// their stat changed since the last look, and their content is neither the
// running configuration's nor one that already failed.
func (w *watcher) changed() bool {
	fp := w.fingerprint()
	if fp == w.seen {
		return false
	}
	w.seen = fp
	sum := w.contentHash()
	if sum == w.good || (w.hasBad && sum == w.bad) {
		return false
	}
	w.pending, w.hasPending = sum, true
	return true
}

// failed records that loading the files failed, so the poll does not retry
// the same content. After changed, it is the content changed saw (what the
// poll loaded); otherwise (a SIGHUP) the files' content now.
func (w *watcher) failed() {
	if w.hasPending {
		w.bad = w.pending
	} else {
		w.seen = w.fingerprint()
		w.bad = w.contentHash()
	}
	w.hasBad, w.hasPending = true, false
}

// rebase is failed (the name the poll loop uses).
func (w *watcher) rebase() { w.failed() }

func itoa(n uint64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(buf[i:])
		}
	}
}
