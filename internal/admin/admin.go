// Package admin owns egress's admin HTTP listener: /metrics (Prometheus),
// /healthz (liveness), /readyz (readiness, with the active config version),
// /proxy.pac (a proxy auto-config file for clients) and, when enabled,
// /debug/pprof/.
//
// The package knows nothing about the policy or the proxy: it asks a State
// for readiness and a PAC callback for the current PAC values, so a reload
// is visible on the next request.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths served by Handler.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathPAC     = "/proxy.pac"
	PathPprof   = "/debug/pprof/"
)

// PACContentType is the media type browsers expect for a PAC file.
const PACContentType = "application/x-ns-proxy-autoconfig"

// Timeouts of the admin http.Server.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	// WriteTimeout leaves room for /debug/pprof/profile?seconds=30.
	WriteTimeout  = 60 * time.Second
	IdleTimeout   = 2 * time.Minute
	ShutdownGrace = 5 * time.Second
	maxHeaderSize = 16 << 10
)

// Sentinel errors.
var (
	// ErrNoProxyAddress: the PAC has no configured proxy address and the
	// request carries no usable Host, so no PROXY line can be written.
	ErrNoProxyAddress = errors.New("admin: no proxy address for the PAC file")
)

// State reports readiness: ok when a config is loaded, the listeners are up
// and the process is not shutting down. configVersion is the active config
// hash (may be empty before the first load); why explains a false ok.
type State interface {
	Ready() (ok bool, configVersion string, why string)
}

// Options configures Handler.
type Options struct {
	Gatherer prometheus.Gatherer // for /metrics; required
	State    State               // for /readyz; nil means never ready
	PAC      func() PACConfig    // current PAC values; nil disables /proxy.pac (404)
	Pprof    bool                // serve /debug/pprof/
	Log      *slog.Logger        // nil: slog.Default()
}

// Handler returns the admin mux.
func Handler(o Options) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	if o.Gatherer != nil {
		mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelError),
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: 4,
			Timeout:             10 * time.Second,
		}))
	}
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if o.State == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: no state\n")
			return
		}
		ok, version, why := o.State.Ready()
		if !ok {
			if why == "" {
				why = "starting"
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", why)
			return
		}
		fmt.Fprintf(w, "ready config_version=%s\n", version)
	})
	if o.PAC != nil {
		mux.HandleFunc("GET "+PathPAC, func(w http.ResponseWriter, r *http.Request) {
			body, err := PACFile(o.PAC(), r.Host)
			if errors.Is(err, ErrNoProxyAddress) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err != nil {
				log.Error("admin: cannot build PAC file", "err", err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", PACContentType)
			w.Header().Set("Cache-Control", "no-cache")
			io.WriteString(w, body)
		})
	}
	if o.Pprof {
		mux.HandleFunc(PathPprof, pprof.Index)
		mux.HandleFunc(PathPprof+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PathPprof+"profile", pprof.Profile)
		mux.HandleFunc(PathPprof+"symbol", pprof.Symbol)
		mux.HandleFunc(PathPprof+"trace", pprof.Trace)
	}
	return mux
}

// Serve serves h on ln until ctx is done, then shuts the server down
// (letting in-flight requests finish for up to ShutdownGrace). It returns nil
// after a shutdown caused by ctx, or the error that stopped serving.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    maxHeaderSize,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}
