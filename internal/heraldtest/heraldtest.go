// Package heraldtest starts real, in-process Herald servers for tests, set
// up as herald serve --demo sets up its server (without the demo's event
// stream): the memory broker, a schema registry of the well-known types
// and the example schemas (the broker as its store), the demo page at /,
// HTTP and gRPC on 127.0.0.1:0, and a gRPC client connection. Everything
// is shut down by the test's cleanup.
package heraldtest

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/demo"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/web"
)

// Options configure a test server. Config's Broker, Types, Schemas and
// Pages are filled in unless set.
type Options struct {
	Config bridge.Config
	Memory memory.Options
	// ShutsDownItself: the test calls Shutdown itself and judges how it
	// went; the cleanup still shuts down, but does not fail the test on
	// a shutdown cut short.
	ShutsDownItself bool
}

// Server is a running test server.
type Server struct {
	*bridge.Server
	// URL is the HTTP base, e.g. http://127.0.0.1:41234.
	URL string
	// GRPCAddr is the gRPC address; Conn a plaintext client connection to it.
	GRPCAddr string
	Conn     *grpc.ClientConn
	Broker   *memory.Broker
	Types    *schema.Registry
}

// Start starts a server and registers its shutdown with tb.Cleanup; the
// cleanup fails the test if the shutdown was not clean.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	b := memory.New(opts.Memory)
	tb.Cleanup(func() { b.Close() })
	types, err := schema.New(context.Background(), schema.Options{Store: b, Compiled: demo.Files()})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := opts.Config
	if cfg.Broker == nil {
		cfg.Broker = b
	}
	if cfg.Types == nil {
		cfg.Types = types
	}
	if cfg.Schemas == nil {
		cfg.Schemas = schema.NewService(types)
	}
	if cfg.Pages == nil {
		cfg.Pages = web.Pages()
	}
	srv, err := bridge.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(httpLn, grpcLn) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !opts.ShutsDownItself {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
	}
	return &Server{Server: srv, URL: scheme + httpLn.Addr().String(), GRPCAddr: grpcLn.Addr().String(), Conn: conn, Broker: b, Types: types}
}
