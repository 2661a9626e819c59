package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/heraldhq/herald/cmd/herald-bench/internal/floor"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// runFloor is the floor process: the harness re-executes itself with
// "floor-sse" or "floor-grpc". It logs one JSON line with its addresses to
// stderr, like herald serve, and runs until SIGTERM.
func runFloor(mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	heartbeat := fs.Duration("heartbeat", 15*time.Second, "heartbeat interval (floor-sse)")
	debugAddr := fs.String("debug-addr", "", "serve /debug/pprof/ on this address")
	raw := fs.Bool("raw", false, "floor-sse: hijack connections and write to the bare sockets")
	writeTimeout := fs.Duration("write-timeout", 0, "floor-sse: cut a stream whose write blocks this long (0: never)")
	tlsCert := fs.String("tls-cert", "", "floor-sse: serve HTTPS with HTTP/2 by ALPN, with this PEM certificate; needs --tls-key")
	tlsKey := fs.String("tls-key", "", "floor-sse: PEM private key of --tls-cert")
	h2c := fs.Bool("h2c", false, "floor-sse: also serve HTTP/2 without TLS (h2c)")
	grpcIngest := fs.Bool("grpc", false, "floor-sse: also take frames over a gRPC PublishStream, each message's payload value a frame")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logLine := func(rec map[string]string) {
		b, _ := json.Marshal(rec)
		fmt.Fprintln(os.Stderr, string(b))
	}
	if *debugAddr != "" {
		ln, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.Serve(ln, mux) }()
		logLine(map[string]string{"msg": "debug listening", "addr": ln.Addr().String()})
	}

	switch mode {
	case "floor-sse":
		httpLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ingestLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		f := floor.NewSSE(*heartbeat, ctx.Done())
		f.Raw = *raw
		f.WriteTimeout = *writeTimeout
		mux := http.NewServeMux()
		mux.Handle("GET /v1/events", f)
		mux.HandleFunc("POST /v1/topics/{topic}/events", f.Publish)
		hs, err := floorServer(mux, *tlsCert, *tlsKey, *h2c)
		if err != nil {
			return err
		}
		go func() { _ = serveFloor(hs, httpLn) }()
		go func() {
			for {
				c, err := ingestLn.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if err := f.Ingest(c); err != nil {
						fmt.Fprintln(os.Stderr, "ingest:", err)
					}
				}()
			}
		}()
		rec := map[string]string{"msg": "floor listening", "http": httpLn.Addr().String(), "ingest": ingestLn.Addr().String()}
		if *grpcIngest {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			gs := newFloorGRPC()
			heraldv1.RegisterPublisherServiceServer(gs, floor.SSEOverGRPC{SSE: f})
			go func() { _ = gs.Serve(ln) }()
			defer gs.Stop()
			rec["grpc"] = ln.Addr().String()
		}
		logLine(rec)
		<-ctx.Done()
		ingestLn.Close()
		return hs.Close()
	case "floor-grpc":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		gs := newFloorGRPC()
		heraldv1.RegisterPublisherServiceServer(gs, floor.GRPC{})
		go func() { _ = gs.Serve(ln) }()
		logLine(map[string]string{"msg": "floor listening", "grpc": ln.Addr().String()})
		<-ctx.Done()
		gs.Stop()
		return nil
	}
	return fmt.Errorf("unknown floor mode %q", mode)
}

// newFloorGRPC is a gRPC server with the flow-control windows of Herald's
// gRPC listener.
func newFloorGRPC() *grpc.Server {
	return grpc.NewServer(grpc.StaticStreamWindowSize(1<<20), grpc.StaticConnWindowSize(4<<20))
}
