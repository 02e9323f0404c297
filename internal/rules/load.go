package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Config is one loaded, validated and compiled configuration. It is immutable:
// a reload builds a new one.
type Config struct {
	Proxy       ProxySettings
	Transparent TransparentSettings
	Admin       AdminSettings
	TLS         TLSSettings
	Upstream    UpstreamSettings
	Log         LogSettings
	Limits      LimitsSettings
	// Auth is the auth block (identity sources, SPEC §10.2).
	Auth AuthSettings
	// ProxyProtocolFrom is kept apart from the listener settings: it applies
	// on reload, they at the next restart.
	ProxyProtocolFrom ProxyProtocolPeers

	Policy     *Policy
	Categories []*Category
	// Feeds are the live list feeds of every category, in order (SPEC §10.3).
	Feeds []*Feed
	Tests []*Test

	// Version is a short hash of every byte read (HCL and list files): the
	// egress.config_version of events and metrics.
	Version string
	// Files lists every file read, for change polling.
	Files []string
	// Sums holds the SHA-256 of each file of Files as it was read: what the
	// change poll compares the files on disk with, so that an edit made
	// while the configuration was loading is not taken for the running one.
	// A file that could not be read has no entry.
	Sums map[string][sha256.Size]byte
	// Warnings are non-fatal diagnostics (expiring exceptions, ...).
	Warnings hcl.Diagnostics
	// Source is what was loaded ("<embedded default>" or the path).
	Source string
}

// Category is a compiled category, for listings.
type Category struct {
	Name        string
	Description string
	Domains     int
}

// Options tune Load.
type Options struct {
	// Now is the clock for expiring rules (decisions and validate warnings);
	// nil means time.Now.
	Now func() time.Time
	// FS, if set, is read instead of the operating system's files; paths are
	// then slash-separated and relative to its root.
	FS fs.FS
}

// ExpiryWarning is how far ahead validate warns of an expiring exception.
const ExpiryWarning = 30 * 24 * time.Hour

// Load reads one .hcl file, or every *.hcl file of a directory merged into one
// configuration, and compiles it. Any error diagnostic means no Config.
// Warnings are returned in the diagnostics too (and kept in Config.Warnings).
func Load(p string, opt Options) (*Config, hcl.Diagnostics) {
	l := &loader{fsys: opt.FS, now: opt.Now, parser: hclparse.NewParser()}
	if l.now == nil {
		l.now = time.Now
	}
	return l.load(p)
}

type loader struct {
	fsys   fs.FS
	now    func() time.Time
	parser *hclparse.Parser
	files  []string
	sums   map[string][sha256.Size]byte // of every file read, by name
}

// readFile reads one file of the configuration and records its sum.
func (l *loader) readFile(name string) ([]byte, error) {
	var data []byte
	var err error
	if l.fsys != nil {
		data, err = fs.ReadFile(l.fsys, name)
	} else {
		data, err = os.ReadFile(name)
	}
	if err == nil {
		if l.sums == nil {
			l.sums = make(map[string][sha256.Size]byte)
		}
		l.sums[name] = sha256.Sum256(data)
	}
	return data, err
}

func (l *loader) join(dir, name string) string {
	if l.fsys != nil {
		return path.Join(dir, name)
	}
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

func (l *loader) dir(name string) string {
	if l.fsys != nil {
		return path.Dir(name)
	}
	return filepath.Dir(name)
}

// HCLFiles lists the files Load parses for path p: p itself, or the *.hcl
// files in it (not hidden ones, not directories), sorted. The change poll
// watches the same list.
func HCLFiles(p string) ([]string, error) {
	return (&loader{}).hclFiles(p)
}

// hclFiles lists the files to parse: p itself, or the *.hcl files in it.
func (l *loader) hclFiles(p string) ([]string, error) {
	var st fs.FileInfo
	var err error
	if l.fsys != nil {
		st, err = fs.Stat(l.fsys, p)
	} else {
		st, err = os.Stat(p)
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var entries []fs.DirEntry
	if l.fsys != nil {
		entries, err = fs.ReadDir(l.fsys, p)
	} else {
		entries, err = os.ReadDir(p)
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		// Kubernetes ConfigMap mounts hold "..data" links and dot-directories.
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".hcl") {
			continue
		}
		full := l.join(p, e.Name())
		var info fs.FileInfo
		if l.fsys != nil {
			info, err = fs.Stat(l.fsys, full)
		} else {
			info, err = os.Stat(full)
		}
		if err != nil || info.IsDir() {
			continue
		}
		out = append(out, full)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no .hcl files in directory %s", p)
	}
	return out, nil
}

func (l *loader) load(p string) (*Config, hcl.Diagnostics) {
	names, err := l.hclFiles(p)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read configuration",
			Detail: fmt.Sprintf("%v.", err), Subject: &hcl.Range{Filename: p, Start: hcl.InitialPos, End: hcl.InitialPos}}}
	}
	h := sha256.New()
	var diags hcl.Diagnostics
	var files []*hcl.File
	for _, name := range names {
		src, err := l.readFile(name)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read configuration file",
				Detail: fmt.Sprintf("%v.", err), Subject: &hcl.Range{Filename: name, Start: hcl.InitialPos, End: hcl.InitialPos}})
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(name), len(src))
		h.Write(src)
		l.files = append(l.files, name)
		f, fd := l.parser.ParseHCL(src, name)
		diags = append(diags, fd...)
		if f != nil {
			files = append(files, f)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	var root rawRoot
	diags = append(diags, gohcl.DecodeBody(hcl.MergeFiles(files), nil, &root)...)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg := &Config{Source: p}
	diags = append(diags, cfg.applySettings(&root)...)
	diags = append(diags, l.logTLSFiles(cfg, &root)...)
	diags = append(diags, l.authFiles(cfg, &root, h)...)
	c := &compiler{loader: l, cfg: cfg, hash: h}
	diags = append(diags, c.compile(&root)...)
	cfg.Files, cfg.Sums = l.files, l.sums
	cfg.Version = hex.EncodeToString(h.Sum(nil))[:12]
	if diags.HasErrors() {
		return nil, diags
	}
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			cfg.Warnings = append(cfg.Warnings, d)
		}
	}
	return cfg, diags
}

// ErrInvalid is returned by MustLoad-style helpers when diagnostics have errors.
var ErrInvalid = errors.New("invalid configuration")

// DiagnosticsError turns error diagnostics into an error (nil when none).
func DiagnosticsError(diags hcl.Diagnostics) error {
	if !diags.HasErrors() {
		return nil
	}
	var b strings.Builder
	n := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			if n > 0 {
				b.WriteString("\n")
			}
			b.WriteString(FormatDiagnostic(d))
			n++
		}
	}
	return fmt.Errorf("%w (%d errors):\n%s", ErrInvalid, n, b.String())
}
