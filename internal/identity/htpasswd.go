package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ErrFileFormat is wrapped by every error of ParseHtpasswd and ParseGroups.
var ErrFileFormat = errors.New("invalid file")

// LineError is a problem on one line of an htpasswd or group file.
type LineError struct {
	Line    int // 1-based
	Problem string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Problem) }
func (e *LineError) Unwrap() error { return ErrFileFormat }

// Htpasswd is a parsed htpasswd file of bcrypt hashes ("user:$2y$..."), with
// the groups of its users from a group file. It never changes once built and
// implements PasswordVerifier.
type Htpasswd struct {
	hashes map[string][]byte
	groups map[string][]string
	// dummy is compared when the user is unknown, so that a wrong user name
	// costs the same time as a wrong password.
	dummy []byte
	// busy bounds the bcrypt comparisons running at once (each is tens of
	// milliseconds of CPU): a flood of distinct wrong passwords from many
	// sources queues here, within its context's deadline, instead of
	// starving the proxy.
	busy chan struct{}
}

var _ PasswordVerifier = (*Htpasswd)(nil)

// maxUserLen bounds a user name everywhere (files and headers).
const maxUserLen = 256

// ParseHtpasswd reads an htpasswd file: one "user:hash" per line, blank lines
// and lines starting with # ignored. Only bcrypt hashes ($2a$, $2b$, $2y$) are
// accepted: the MD5 ($apr1$), SHA-1 ({SHA}) and crypt(3) forms htpasswd can
// also write are too cheap to brute-force to protect anything; the error names
// the line so that the operator can re-hash it with `htpasswd -B`.
func ParseHtpasswd(data []byte) (*Htpasswd, error) {
	h := &Htpasswd{hashes: map[string][]byte{}, busy: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		user, hash, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(user) == 0 {
			return nil, &LineError{n, `expected "user:bcrypt-hash"`}
		}
		if !validUser(string(user)) {
			return nil, &LineError{n, "invalid user name (1 to 256 printable characters, no ':' or spaces)"}
		}
		if _, dup := h.hashes[string(user)]; dup {
			return nil, &LineError{n, fmt.Sprintf("user %q appears twice", user)}
		}
		if _, err := bcrypt.Cost(hash); err != nil {
			return nil, &LineError{n, fmt.Sprintf("user %q: not a bcrypt hash (%s); only bcrypt is accepted, create it with `htpasswd -B`", user, hashKind(hash))}
		}
		h.hashes[string(user)] = bytes.Clone(hash)
	}
	// A real hash of a random-looking constant at the cost of the file's
	// first entry (or the default), compared for unknown users.
	cost := bcrypt.DefaultCost
	for _, v := range h.hashes {
		if c, err := bcrypt.Cost(v); err == nil {
			cost = c
		}
		break
	}
	h.dummy, _ = bcrypt.GenerateFromPassword([]byte("egress unknown user"), cost)
	return h, nil
}

// hashKind names a non-bcrypt hash for the error message.
func hashKind(hash []byte) string {
	s := string(hash)
	switch {
	case strings.HasPrefix(s, "$apr1$"):
		return "Apache MD5"
	case strings.HasPrefix(s, "{SHA}"):
		return "SHA-1"
	case strings.HasPrefix(s, "$1$"):
		return "MD5-crypt"
	case strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return "SHA-crypt"
	case strings.HasPrefix(s, "$2"):
		return "a malformed bcrypt hash"
	}
	return "crypt or plain text"
}

func validUser(u string) bool {
	if u == "" || len(u) > maxUserLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == ':' || c == 0x7f {
			return false
		}
	}
	return true
}

// Users is the number of users in the file.
func (h *Htpasswd) Users() int { return len(h.hashes) }

// WithGroups returns a copy of h whose users have the groups of g (nil: none).
func (h *Htpasswd) WithGroups(g *Groups) *Htpasswd {
	c := *h
	if g != nil {
		c.groups = g.byUser
	}
	return &c
}

// VerifyPassword checks password against the user's bcrypt hash. An unknown
// user and a wrong password are the same error, after the same work.
func (h *Htpasswd) VerifyPassword(ctx context.Context, user, password string) (Identity, error) {
	select {
	case h.busy <- struct{}{}:
		defer func() { <-h.busy }()
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("htpasswd: too many password checks in progress: %w", ErrUnavailable)
	}
	hash, ok := h.hashes[user]
	if !ok {
		bcrypt.CompareHashAndPassword(h.dummy, []byte(password))
		return Identity{}, fmt.Errorf("htpasswd: unknown user or wrong password: %w", ErrBadCredentials)
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil {
		return Identity{}, fmt.Errorf("htpasswd: unknown user or wrong password: %w", ErrBadCredentials)
	}
	return Identity{User: user, Groups: h.groups[user], Method: MethodBasic}, nil
}

// Groups is a parsed group file: "group: user1 user2" lines (blank lines and
// # comments ignored; a group may span several lines).
type Groups struct {
	byUser map[string][]string // user → sorted groups
	count  int
}

// ParseGroups reads a group file.
func ParseGroups(data []byte) (*Groups, error) {
	sets := map[string]map[string]bool{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		group, members, ok := bytes.Cut(line, []byte(":"))
		g := string(bytes.TrimSpace(group))
		if !ok || !validUser(g) {
			return nil, &LineError{n, `expected "group: user1 user2 ..."`}
		}
		for _, u := range strings.Fields(string(members)) {
			if !validUser(u) {
				return nil, &LineError{n, fmt.Sprintf("invalid user name %q", u)}
			}
			if sets[u] == nil {
				sets[u] = map[string]bool{}
			}
			sets[u][g] = true
		}
	}
	out := &Groups{byUser: map[string][]string{}}
	all := map[string]bool{}
	for u, gs := range sets {
		list := make([]string, 0, len(gs))
		for g := range gs {
			list = append(list, g)
			all[g] = true
		}
		sort.Strings(list)
		out.byUser[u] = list
	}
	out.count = len(all)
	return out, nil
}

// Of returns the sorted groups of user (nil when none).
func (g *Groups) Of(user string) []string {
	if g == nil {
		return nil
	}
	return g.byUser[user]
}

// Count is the number of distinct groups.
func (g *Groups) Count() int { return g.count }
