//go:build !linux

package tlsproxy

// ServeEvented is Serve where the event loops cannot run (they need epoll):
// no caller gives it a flow there (internal/transparent and
// internal/httpproxy check first).
func (p *Proxy) ServeEvented(f *Flow) { p.Serve(f) }
