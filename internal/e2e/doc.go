// Package e2e holds the end-to-end tests: each starts the real egress binary
// (built once per run) on loopback with a config of its own, drives it with
// real clients (Go's TLS stack, curl, openssl) against origins started in the
// test, and asserts on what comes back: responses, TLS alerts, SIEM events on
// stdout, metrics on the admin listener. Test names resolve through
// upstream.hosts to 127.0.0.1; nothing leaves the machine.
package e2e
