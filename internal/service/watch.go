package service

import (
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
type watcher struct {
	cfg  *rules.Config
	seen string
}

func newWatcher(cfg *rules.Config) *watcher {
	w := &watcher{cfg: cfg}
	w.seen = w.fingerprint()
	return w
}

func (w *watcher) fingerprint() string {
	if strings.HasPrefix(w.cfg.Source, "<") {
		return "" // embedded: nothing to watch
	}
	var b strings.Builder
	files := append([]string(nil), w.cfg.Files...)
	if st, err := os.Stat(w.cfg.Source); err == nil && st.IsDir() {
		m, _ := filepath.Glob(filepath.Join(w.cfg.Source, "*.hcl"))
		files = append(files, m...)
	}
	sort.Strings(files)
	for _, f := range files {
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

// changed reports whether anything differs from the last fingerprint.
func (w *watcher) changed() bool {
	return w.fingerprint() != w.seen
}

// rebase accepts the current state (after a failed reload, so that the same
// broken file is not reloaded every interval).
func (w *watcher) rebase() { w.seen = w.fingerprint() }

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
