package service

import (
	"crypto/sha256"
	"hash"
	"io"
	"os"
	"slices"
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
	seen string // stat fingerprint last looked at; "" before the first poll

	good   [sha256.Size]byte // content of the running configuration, as it was read
	bad    [sha256.Size]byte // content that last failed to load
	hasBad bool
}

func newWatcher(cfg *rules.Config) *watcher {
	// The baseline is what the load read, never the files as they are now:
	// an edit that landed after the load read a file (a poll between a
	// truncate and a write, or an edit during a long load) would otherwise
	// become the baseline and never be loaded. No stat fingerprint is kept
	// for the same reason, so the first poll hashes the files once.
	w := &watcher{cfg: cfg}
	w.good = w.loadedHash()
	return w
}

// files is every file the configuration depends on, sorted and without
// repeats: the files it read and the *.hcl files of its directory.
func (w *watcher) files() []string {
	files := w.loadedFiles()
	if files == nil {
		return nil // embedded: nothing to watch
	}
	if st, err := os.Stat(w.cfg.Source); err == nil && st.IsDir() {
		// The loader's own list (no hidden files such as an editor's
		// ".#egress.hcl", no directories): a name the load would skip
		// must not count as a change, or every poll would reload.
		m, _ := rules.HCLFiles(w.cfg.Source)
		files = append(files, m...)
		sort.Strings(files)
		files = slices.Compact(files)
	}
	return files
}

// loadedFiles is the files the configuration read, sorted and without
// repeats; nil for the embedded configuration.
func (w *watcher) loadedFiles() []string {
	if strings.HasPrefix(w.cfg.Source, "<") {
		return nil
	}
	files := append([]string(nil), w.cfg.Files...)
	sort.Strings(files)
	return slices.Compact(files)
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

// contentHash hashes the names and contents of files() as they are on disk
// (a missing or unreadable file hashes as such). It reads the files: call it
// only when the fingerprint changed.
func (w *watcher) contentHash() [sha256.Size]byte {
	h := sha256.New()
	for _, f := range w.files() {
		sum, ok := fileSum(f)
		hashEntry(h, f, sum, ok)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// loadedHash is contentHash of the files as the configuration read them,
// from the sums the load recorded.
func (w *watcher) loadedHash() [sha256.Size]byte {
	h := sha256.New()
	for _, f := range w.loadedFiles() {
		sum, ok := w.cfg.Sums[f]
		hashEntry(h, f, sum, ok)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func hashEntry(h hash.Hash, name string, sum [sha256.Size]byte, ok bool) {
	io.WriteString(h, name+"\x00")
	if !ok {
		io.WriteString(h, "missing\x00")
		return
	}
	h.Write(sum[:])
}

// fileSum is the SHA-256 of one file's content; false if it cannot be read.
func fileSum(name string) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	fh, err := os.Open(name)
	if err != nil {
		return sum, false
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return sum, false
	}
	h.Sum(sum[:0])
	return sum, true
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
	return sum != w.good && !(w.hasBad && sum == w.bad)
}

// quiet reports whether the files' stat is still what the last look saw,
// and makes the look now the last: after changed, a writer that is still
// at work (an editor or `git checkout` writing a file in place, a list
// copied in pieces) is waited for before the files are loaded.
func (w *watcher) quiet() bool {
	fp := w.fingerprint()
	if fp == w.seen {
		return true
	}
	w.seen = fp
	return false
}

// failed records that loading the files failed, so the poll does not retry
// the same content: the content now, which a load that saw the files keep
// still while it read them (stableLoad) read.
func (w *watcher) failed() {
	w.seen = w.fingerprint()
	w.bad, w.hasBad = w.contentHash(), true
}

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
