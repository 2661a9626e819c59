package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"

	"github.com/spf13/pflag"
)

// The operations listeners, apart from the public HTTP port: --metrics-addr
// serves /metrics alone, --debug-addr serves Go's profiles at /debug/pprof/
// and /metrics, so that one private port is enough. Profiles reveal the
// server's internals (goroutine stacks, the command line) and cost CPU:
// they are never served on the public port, and the debug listener takes
// loopback addresses only unless --debug-addr-public.

// registerOps defines the flags of the operations listeners, but for
// --debug-addr, defined before them.
func (c *serveConfig) registerOps(fs *pflag.FlagSet) {
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "address for a separate listener serving Prometheus metrics at /metrics (e.g. 127.0.0.1:9100); off when empty")
	fs.BoolVar(&c.publicMetrics, "public-metrics", true, "serve /metrics on --http-addr too; false keeps metrics off the public port (serve them on --metrics-addr or --debug-addr instead)")
	fs.BoolVar(&c.debugAddrPublic, "debug-addr-public", false, "let --debug-addr listen on an address that is not loopback (anyone who reaches it can take profiles: firewall it)")
}

// validateOps checks the flags of the operations listeners.
func (c *serveConfig) validateOps() error {
	// In development mode every address is kept on loopback already
	// (securityFlags.validate, given listenAddrs).
	if c.debugAddr != "" && !c.debugAddrPublic && !c.security.dev {
		return checkDebugAddr(c.debugAddr)
	}
	return nil
}

// listenAddrs are the addresses serve listens on.
func (c *serveConfig) listenAddrs() []string {
	addrs := []string{c.httpAddr, c.grpcAddr}
	for _, a := range []string{c.metricsAddr, c.debugAddr} {
		if a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// sideListener is one operations listener. A nil *sideListener is one that
// is off: its methods do nothing. It is used from one goroutine (wire,
// then run, then close).
type sideListener struct {
	ln  net.Listener
	srv *http.Server // once serving
}

// listenSide listens on addr for the listener set by --flagName; nil when
// addr is empty.
func listenSide(flagName, addr string) (*sideListener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for --%s: %w", flagName, err)
	}
	return &sideListener{ln: ln}, nil
}

// serve serves h until close.
func (s *sideListener) serve(h http.Handler) {
	if s == nil {
		return
	}
	// No write timeout: /debug/pprof/profile and /trace write for as long
	// as their seconds= parameter asks.
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = s.srv.Serve(s.ln) }()
}

func (s *sideListener) addr() string { return s.ln.Addr().String() }

// close stops serving at once; the listener's clients hold no streams.
func (s *sideListener) close() {
	if s == nil {
		return
	}
	if s.srv != nil {
		_ = s.srv.Close()
	}
	_ = s.ln.Close()
}

// metricsMux serves metrics at /metrics, and nothing else.
func metricsMux(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return mux
}

// debugMux serves net/http/pprof's /debug/pprof/ and metrics at /metrics.
func debugMux(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /metrics", metrics)
	return mux
}

// checkDebugAddr refuses a --debug-addr that is not a loopback address:
// one without a host (":6060") listens on every interface.
func checkDebugAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %q: %w", addr, err)
	}
	if !loopbackHost(host) {
		return fmt.Errorf("--debug-addr %s is not a loopback address: its Go profiles reveal the server's internals and cost CPU, so it listens on 127.0.0.1, ::1 or localhost only; add --debug-addr-public to listen there anyway, behind a firewall", addr)
	}
	return nil
}

// loopbackHost reports whether host, from a listen address, is loopback
// only: localhost or a loopback IP. "" (every interface) is not.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
