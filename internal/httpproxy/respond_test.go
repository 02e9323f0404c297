package httpproxy

import (
	"net/http"
	"reflect"
	"testing"
)

func TestProxyStatus(t *testing.T) {
	tests := []struct{ errType, details, want string }{
		{"http_request_denied", "rule no-social", `egress; error=http_request_denied; details="rule no-social"`},
		{"destination_ip_prohibited", "", `egress; error=destination_ip_prohibited`},
		{"http_request_denied", "rule a\"b\\c\r\nX-Injected: 1", `egress; error=http_request_denied; details="rule a\"b\\c??X-Injected: 1"`},
		{"dns_error", "é", `egress; error=dns_error; details="??"`},
	}
	for _, tt := range tests {
		if got := proxyStatus(tt.errType, tt.details); got != tt.want {
			t.Errorf("proxyStatus(%q, %q) = %s, want %s", tt.errType, tt.details, got, tt.want)
		}
	}
}

func TestWantsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"application/json":                  true,
		"text/html, application/json;q=0.9": true,
		"text/html":                         false,
		"":                                  false,
		"application/jsonp":                 false,
	} {
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		if got := wantsJSON(h); got != want {
			t.Errorf("Accept %q: %v", accept, got)
		}
	}
}

func TestHostHeaders(t *testing.T) {
	raw := "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\nhOsT:  c.example:80 \r\nX: y\r\n\r\nGET http://z/ HTTP/1.1\r\nHost: z\r\n\r\n"
	if got, want := hostHeaders([]byte(raw)), []string{"b.example", "c.example:80"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := hostHeaders([]byte("GET http://a/ HTTP/1.1\nX: 1\n\n")); got != nil {
		t.Fatalf("got %q", got)
	}
}
