package httpproxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/audit"
	"github.com/egress-proxy/egress/internal/identity"
	"github.com/egress-proxy/egress/internal/metrics"
	"github.com/egress-proxy/egress/internal/outcome"
	"github.com/egress-proxy/egress/internal/rules"
)

// Identity on the explicit proxy (SPEC §10.2), in the order a request meets
// it:
//
//	client certificate (TLS listener, at the handshake) → Proxy-Authorization
//	(every request that carries one: parsed, checked, never forwarded) → the
//	identity this connection already established under the same config →
//	require_auth: 407 until identified → decide with the identity → a deny
//	that an identity rule could lift, for an unidentified client: 407.
//
// A connection's identity belongs to its goroutine (conn.who); a reload
// (another State) drops an identity from credentials, so that changed users
// and groups apply at the next request: the client is asked again.

// authTimeout bounds one check against an identity source (an LDAP bind and
// search, a Kerberos ticket); the source's own timeout may be shorter.
const authTimeout = 10 * time.Second

// statusAuthUnavailable is the Proxy-Status error of a fail-closed 503
// (RFC 9209 §2.3.18).
const statusAuthUnavailable = "proxy_internal_error"

// who is the identity state of a client connection.
type who struct {
	// cert is the verified client certificate's identity (the TLS listener),
	// leaf the certificate, for the CRL in force at each request.
	cert identity.Identity
	leaf *x509.Certificate
	// id came from credentials under st; key is a hash of the header that
	// gave it (a browser repeats the same header on every request).
	id  identity.Identity
	st  *active.State
	key [sha256.Size]byte
}

// identity returns who the client is for a request under st.
func (w *who) current(st *active.State) identity.Identity {
	if w.st == st && w.id.Known() {
		return w.id
	}
	return w.cert
}

// identify establishes who makes req under st. It returns ok when the request
// may be decided (with or without an identity); otherwise it has answered
// (407 or 503, with its event), and keep says whether the connection may
// carry another request. The Proxy-Authorization field is removed from req in
// every case: it never reaches an origin.
func (cn *conn) identify(st *active.State, req *http.Request, start time.Time) (ok, keep bool) {
	values := req.Header.Values("Proxy-Authorization")
	req.Header.Del("Proxy-Authorization")
	keep = !req.Close && !hasBody(req)
	cfg := st.Config
	seg, _ := cfg.Policy.SegmentFor(cn.src.Addr())
	if cn.who.leaf != nil && cfg.Proxy.TLS.Revoked(cn.who.leaf) {
		// Revoked since the handshake (a reloaded CRL): the connection ends.
		cn.s.Metrics.Auth.WithLabelValues(metrics.AuthCertificate, metrics.AuthRevoked).Inc()
		cn.authAnswer(st, req, start, seg, rules.ReasonAuthFailed, identity.MethodCertificate, "client certificate revoked", nil)
		return false, false
	}
	switch {
	case st.Auth == nil:
		// No Proxy-Authorization source: the field is ignored (and removed),
		// as before identities existed; clients that always send proxy
		// credentials keep working.
	case len(values) > 1:
		cn.s.Metrics.Auth.WithLabelValues(metrics.AuthBasic, metrics.AuthFailure).Inc()
		cn.authAnswer(st, req, start, seg, rules.ReasonAuthFailed, "", "more than one Proxy-Authorization field", nil)
		return false, keep
	case len(values) == 1:
		key := sha256.Sum256([]byte(values[0]))
		if cn.who.st == st && cn.who.id.Known() && key == cn.who.key {
			break // the header this connection already proved, under this config
		}
		cn.who.id, cn.who.st = identity.Identity{}, nil
		creds, err := identity.ParseProxyAuthorization(values[0])
		method := creds.Method
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
			var id identity.Identity
			id, _, err = st.Auth.Authenticate(ctx, cn.src.Addr(), creds, cfg.BasicOn(cn.s.ProxyTLS))
			cancel()
			if err == nil {
				cn.s.Metrics.Auth.WithLabelValues(string(id.Method), metrics.AuthSuccess).Inc()
				cn.who.id, cn.who.st, cn.who.key = id, st, key
				break
			}
		}
		if method == "" {
			method = schemeOf(values[0])
		}
		return false, cn.authFailed(st, req, start, seg, method, err) && keep
	}
	if seg.RequireAuth && !cn.who.current(st).Known() {
		cn.authAnswer(st, req, start, seg, rules.ReasonAuthRequired, "", "", nil)
		return false, keep
	}
	return true, keep
}

// schemeOf names the method of an unparsable header for the metric label
// (a fixed set: never the client's text).
func schemeOf(v string) identity.Method {
	if s, _, _ := strings.Cut(v, " "); strings.EqualFold(s, "Negotiate") {
		return identity.MethodNegotiate
	}
	return identity.MethodBasic
}

// authFailed answers credentials that were not accepted: 407 auth_failed
// (wrong, malformed, rate-limited, not offered here) or 503
// auth_unavailable (the source could not check them: fail closed). It
// returns whether the connection may go on.
func (cn *conn) authFailed(st *active.State, req *http.Request, start time.Time, seg *rules.Segment, method identity.Method, err error) bool {
	result, reason, text := metrics.AuthFailure, rules.ReasonAuthFailed, "credentials refused"
	switch {
	case errors.Is(err, identity.ErrUnavailable):
		result, reason, text = metrics.AuthUnavailable, rules.ReasonAuthUnavailable, "identity source unavailable: "+err.Error()
	case errors.Is(err, identity.ErrRateLimited):
		result, text = metrics.AuthRateLimited, err.Error()
	case errors.Is(err, identity.ErrNotOffered):
		text = err.Error()
	case errors.Is(err, identity.ErrMalformed):
		text = err.Error()
	}
	cn.s.Metrics.Auth.WithLabelValues(string(method), result).Inc()
	cn.authAnswer(st, req, start, seg, reason, method, text, nil)
	return reason != rules.ReasonAuthUnavailable
}

// challenges are the Proxy-Authenticate values offered on this listener
// under st: Negotiate when a keytab is configured, Basic when a password
// source is and this listener accepts Basic.
func (cn *conn) challenges(st *active.State) []string {
	var out []string
	if st.Auth.OffersNegotiate() {
		out = append(out, "Negotiate")
	}
	if st.Auth.OffersBasic() && st.Config.BasicOn(cn.s.ProxyTLS) {
		out = append(out, `Basic realm="`+st.Config.Auth.Realm+`", charset="UTF-8"`)
	}
	return out
}

// askIdentity reports whether a deny d of an unidentified client should be
// answered with 407 instead: an allow rule with users or groups matched all
// but the identity (d.IdentityWanted), and the client can identify on this
// listener.
func (cn *conn) askIdentity(st *active.State, d *rules.Decision) bool {
	return d.Action == rules.Deny && d.IdentityWanted &&
		!cn.who.current(st).Known() && len(cn.challenges(st)) > 0
}

// authAnswer writes the 407 (or 503 for auth_unavailable) and its event. An
// identity the request gave is recorded (a revoked certificate's).
func (cn *conn) authAnswer(st *active.State, req *http.Request, start time.Time, seg *rules.Segment, reason rules.Reason, method identity.Method, errText string, d *rules.Decision) {
	cn.answerAuth(cn.begin(st, start), st, req, seg, reason, method, errText, d)
}

// answerAuth is authAnswer for an outcome already begun; it finishes o.
func (cn *conn) answerAuth(o *outcome.Outcome, st *active.State, req *http.Request, seg *rules.Segment, reason rules.Reason, method identity.Method, errText string, d *rules.Decision) {
	ev := o.Event
	ev.Method = req.Method
	if req.Method == http.MethodConnect {
		host, _, err := net.SplitHostPort(req.RequestURI)
		if err != nil {
			host = req.RequestURI
		}
		ev.DestDomain = host
	} else if req.URL != nil {
		ev.URLDomain, ev.URLPath, ev.DestDomain = req.URL.Hostname(), req.URL.Path, req.URL.Hostname()
	}
	if method != "" && ev.AuthMethod == "" {
		ev.AuthMethod = string(method)
	}
	var monitor []*rules.Rule
	if d != nil {
		monitor = d.Monitor
	}
	o.Deny(reason, seg, monitor)
	status := http.StatusProxyAuthRequired
	if reason == rules.ReasonAuthUnavailable {
		status = http.StatusServiceUnavailable
	}
	ev.Status, ev.Error = status, errText
	o.Finish()
	h := http.Header{}
	msg := "Proxy authentication required"
	ps := proxyStatus(statusDenied, string(reason))
	if status == http.StatusServiceUnavailable {
		msg, ps = "The identity service is unavailable; try again later", proxyStatus(statusAuthUnavailable, "identity source unavailable")
		h.Set("Retry-After", "5")
	} else {
		for _, c := range cn.challenges(st) {
			h.Add("Proxy-Authenticate", c)
		}
		if len(h.Values("Proxy-Authenticate")) == 0 {
			msg = "Identify on the TLS proxy listener (Basic is not accepted over plain TCP here)"
		}
	}
	closeAfter := req.Close || hasBody(req) || status == http.StatusServiceUnavailable
	cn.writeTimed(func(w io.Writer) error {
		return writeAuthBlock(w, req, h, blockInfo{Status: status, Action: "deny", Reason: string(reason), Host: ev.DestDomain,
			Segment: o.Event.Segment, EventID: ev.ID, Message: msg}, ps, closeAfter)
	})
}

// writeAuthBlock is writeBlock with extra header fields.
func writeAuthBlock(w io.Writer, req *http.Request, extra http.Header, info blockInfo, ps string, close bool) error {
	return writeBlock(&headerWriter{w: w, extra: extra}, req, info, ps, close)
}

// headerWriter inserts extra header fields after the status line of the one
// response written through it.
type headerWriter struct {
	w     io.Writer
	extra http.Header
}

func (h *headerWriter) Write(p []byte) (int, error) {
	i := strings.Index(string(p), "\r\n")
	if i < 0 || len(h.extra) == 0 {
		return h.w.Write(p)
	}
	var b strings.Builder
	b.Write(p[:i+2])
	h.extra.Write(&b)
	b.Write(p[i+2:])
	if _, err := io.WriteString(h.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// hasBody reports a request with a body the proxy would have to skip.
func hasBody(req *http.Request) bool {
	return req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody
}

// stamp writes the connection's identity into an event.
func stamp(ev *audit.Event, id identity.Identity) {
	if !id.Known() {
		return
	}
	ev.User, ev.UserDomain, ev.UserGroups, ev.AuthMethod = id.User, id.Domain, id.Groups, string(id.Method)
}

// errRevoked is the handshake error of a client certificate on the CRL.
var errRevoked = errors.New("client certificate revoked")

// tlsConfig is the TLS proxy listener's configuration, read from the State in
// force at each handshake (so a reload rotates the certificate, the client
// CA and the CRL).
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			t := s.Active.Config().Proxy.TLS
			if t == nil {
				return nil, errors.New("TLS proxy listener not configured")
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{t.Certificate},
				NextProtos: []string{"http/1.1"}}
			if t.ClientCAs != nil {
				c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, t.ClientCAs
				c.VerifyConnection = func(cs tls.ConnectionState) error {
					if len(cs.PeerCertificates) > 0 && t.Revoked(cs.PeerCertificates[0]) {
						return errRevoked
					}
					return nil
				}
			}
			return c, nil
		},
	}
}

// handshake runs the TLS proxy listener's handshake within tls.hello_timeout
// and takes the client certificate's identity. On failure it closes nothing
// (the caller does) and records a refused client certificate as auth_failed.
func (cn *conn) handshake(st *active.State) bool {
	start := time.Now()
	tc := tls.Server(cn.c, cn.s.tlsConfig())
	cn.c.SetDeadline(start.Add(st.Config.TLS.HelloTimeout))
	err := tc.Handshake()
	cn.c.SetDeadline(time.Time{})
	if err != nil {
		var ve *tls.CertificateVerificationError
		revoked := errors.Is(err, errRevoked)
		if revoked || errors.As(err, &ve) || strings.Contains(err.Error(), "didn't provide a certificate") {
			result := metrics.AuthFailure
			if revoked {
				result = metrics.AuthRevoked
			}
			cn.s.Metrics.Auth.WithLabelValues(metrics.AuthCertificate, result).Inc()
			o := cn.begin(st, start)
			seg, _ := st.Config.Policy.SegmentFor(cn.src.Addr())
			o.Deny(rules.ReasonAuthFailed, seg, nil)
			o.Event.AuthMethod, o.Event.Error = string(identity.MethodCertificate), "TLS handshake: "+err.Error()
			o.Finish()
		}
		return false
	}
	cs := tc.ConnectionState()
	if t := st.Config.Proxy.TLS; t != nil && len(cs.VerifiedChains) > 0 && len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		id := identity.FromCertificate(leaf, t.CertUser, t.CertGroups)
		if !id.Known() {
			cn.s.Metrics.Auth.WithLabelValues(metrics.AuthCertificate, metrics.AuthFailure).Inc()
			o := cn.begin(st, start)
			seg, _ := st.Config.Policy.SegmentFor(cn.src.Addr())
			o.Deny(rules.ReasonAuthFailed, seg, nil)
			o.Event.AuthMethod, o.Event.Error = string(identity.MethodCertificate), "client certificate has no "+t.CertUser
			o.Finish()
			return false
		}
		cn.s.Metrics.Auth.WithLabelValues(metrics.AuthCertificate, metrics.AuthSuccess).Inc()
		cn.who.cert, cn.who.leaf = id, leaf
	}
	cn.c, cn.lr.c = tc, tc
	return true
}
