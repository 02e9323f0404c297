package httpproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Proxy-Status error types (RFC 9209 §2.3).
const (
	statusDenied       = "http_request_denied"
	statusIPForbidden  = "destination_ip_prohibited"
	statusDNS          = "dns_error"
	statusUnavailable  = "destination_unavailable"
	statusBadRequest   = "http_protocol_error"
	statusRequestError = "http_request_error"
	statusLimit        = "connection_limit_reached"
)

// proxyStatus renders a Proxy-Status field value: egress; error=...; details="...".
func proxyStatus(errType, details string) string {
	if details == "" {
		return "egress; error=" + errType
	}
	return "egress; error=" + errType + "; details=" + sfString(details)
}

// sfString is an RFC 8941 string: printable ASCII, '"' and '\' escaped.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// blockInfo is what a block page tells the user.
type blockInfo struct {
	Status  int    `json:"status"`
	Action  string `json:"decision"`
	Reason  string `json:"reason"`
	Host    string `json:"host,omitempty"`
	Segment string `json:"segment,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Ruleset string `json:"ruleset,omitempty"`
	EventID string `json:"event_id"`
	Message string `json:"message"`
}

var blockPage = template.Must(template.New("block").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Blocked by egress policy</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;color:#222}dt{font-weight:bold}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>{{.Message}}</h1>
<p>The network's egress policy does not allow this destination. If you need it for your work, contact your IT security team and give them the event id below.</p>
<dl>
<dt>Destination</dt><dd><code>{{.Host}}</code></dd>
<dt>Network segment</dt><dd>{{if .Segment}}{{.Segment}}{{else}}(none){{end}}</dd>
<dt>Rule</dt><dd>{{if .Rule}}{{.Rule}} ({{.Ruleset}}){{else}}(none: {{.Reason}}){{end}}</dd>
<dt>Reason</dt><dd>{{.Reason}}</dd>
<dt>Event id</dt><dd><code>{{.EventID}}</code></dd>
</dl>
</body></html>
`))

// wantsJSON reports whether the client asked for JSON (Accept: application/json).
func wantsJSON(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

// writeResponse writes a complete response with a small body. close adds
// Connection: close.
func writeResponse(w io.Writer, proto string, status int, header http.Header, body []byte, close bool) error {
	var b bytes.Buffer
	if proto == "" {
		proto = "HTTP/1.1"
	}
	fmt.Fprintf(&b, "%s %d %s\r\n", proto, status, http.StatusText(status))
	header.Set("Content-Length", strconv.Itoa(len(body)))
	if close {
		header.Set("Connection", "close")
	}
	header.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	_, err := w.Write(b.Bytes())
	return err
}

// writeBlock answers a denied or failed request: the block page (HTML, or JSON
// for Accept: application/json) with Proxy-Status.
func writeBlock(w io.Writer, req *http.Request, info blockInfo, proxyStatusValue string, close bool) error {
	h := http.Header{}
	h.Set("Proxy-Status", proxyStatusValue)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	var body []byte
	if req != nil && wantsJSON(req.Header) {
		h.Set("Content-Type", "application/json")
		body, _ = json.Marshal(info)
		body = append(body, '\n')
	} else {
		h.Set("Content-Type", "text/html; charset=utf-8")
		var b bytes.Buffer
		blockPage.Execute(&b, info)
		body = b.Bytes()
	}
	if req != nil && req.Method == http.MethodHead {
		body = nil
	}
	proto := "HTTP/1.1"
	if req != nil && req.ProtoMajor == 1 && req.ProtoMinor == 0 {
		proto = "HTTP/1.0"
	}
	return writeResponse(w, proto, info.Status, h, body, close)
}
