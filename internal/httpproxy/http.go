package httpproxy

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/egress-proxy/egress/internal/active"
	"github.com/egress-proxy/egress/internal/rules"
)

// plain decides and forwards one absolute-form request. It returns whether
// the connection may carry another request.
func (cn *conn) plain(st *active.State, req *http.Request) bool {
	start := time.Now()
	keep := !req.Close
	if cn.s.Mode == Transparent {
		return cn.transparent(st, req, start, keep)
	}
	if !req.URL.IsAbs() || req.URL.Host == "" {
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost),
			Message: "This is a forward proxy: send absolute-URI requests or CONNECT"}, proxyStatus(statusBadRequest, "not a proxy request"), true)
		return false
	}
	if req.URL.Scheme != "http" {
		cn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		writeBlock(cn.c, req, blockInfo{Status: http.StatusBadRequest, Action: "deny", Reason: string(rules.ReasonInvalidHost), Host: req.URL.Host,
			Message: "Only http:// URLs are forwarded; use CONNECT for https"}, proxyStatus(statusBadRequest, "unsupported scheme"), true)
		return false
	}
	port := uint16(80)
	if p := req.URL.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			keep = false
		}
		port = uint16(n)
	}
	id := cn.who.current(st)
	names := rules.Names{Source: cn.src.Addr(), Target: req.URL.Host, Port: port, User: id.User, Groups: id.Groups}
	if len(cn.hosts) > 0 {
		names.Inner, names.HasInner = cn.hosts[0], true
	}
	return cn.forward(st, req, names, req.URL.Host, port, start, keep)
}

// transparent handles an origin-form request on the transparent HTTP
// listener: the Host header is the only name (its port is ignored), and
// transparent.http_port is dialed.
func (cn *conn) transparent(st *active.State, req *http.Request, start time.Time, keep bool) bool {
	port := cn.s.Port
	host := req.Host
	names := rules.Names{Source: cn.src.Addr(), Inner: host, HasInner: host != "", Port: port}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if req.URL.IsAbs() {
		// An absolute URI sent to a transparent port: decide both names.
		names.Target = req.URL.Host
	}
	req.URL.Scheme = "http"
	req.URL.Host = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(int(port)))
	return cn.forward(st, req, names, host, port, start, keep)
}

// hasToken reports whether a comma-separated field lists token (any case).
func hasToken(h http.Header, field, token string) bool {
	for _, v := range h.Values(field) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// removeHopHeaders strips hop-by-hop fields from a response (RFC 9110 §7.6.1),
// including those the Connection field names.
func removeHopHeaders(h http.Header, upgrade bool) {
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !(upgrade && strings.EqualFold(t, "upgrade")) {
				h.Del(t)
			}
		}
	}
	for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding"} {
		h.Del(k)
	}
	if !upgrade {
		h.Del("Connection")
		h.Del("Upgrade")
	}
}
