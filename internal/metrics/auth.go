package metrics

import "github.com/prometheus/client_golang/prometheus"

// egress_auth_total label values (SPEC §10.2). No user name is ever a label.
const (
	AuthBasic       = "basic"
	AuthNegotiate   = "negotiate"
	AuthCertificate = "certificate"

	AuthSuccess     = "success"      // credentials checked and accepted (a cache hit included)
	AuthFailure     = "failure"      // wrong, malformed or not offered on this listener
	AuthRateLimited = "rate_limited" // refused unchecked: the source failed too often
	AuthUnavailable = "unavailable"  // the source could not check them: failed closed
	AuthRevoked     = "revoked"      // a client certificate on the CRL
)

var (
	authMethods = []string{AuthBasic, AuthNegotiate, AuthCertificate}
	authResults = []string{AuthSuccess, AuthFailure, AuthRateLimited, AuthUnavailable, AuthRevoked}
)

// newAuth builds egress_auth_total{method,result} with every series at 0.
func newAuth() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "auth_total",
		Help: "Authentications on the explicit proxy by method (basic, negotiate, certificate) and result (success, failure, rate_limited, unavailable, revoked).",
	}, []string{"method", "result"})
	for _, m := range authMethods {
		for _, r := range authResults {
			c.WithLabelValues(m, r)
		}
	}
	return c
}
