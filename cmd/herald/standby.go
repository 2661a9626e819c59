package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outage"
)

// The backoff between attempts to reach the broker at start: doubling from
// the first delay up to the cap, each delay drawn from its upper half so
// that nodes started together do not knock on the broker in step.
const (
	brokerRetryFirst = 250 * time.Millisecond
	brokerRetryCap   = 5 * time.Second
)

// errStoppedWaiting is wire's error when the node was told to stop while
// it waited for its broker: a clean exit.
var errStoppedWaiting = errors.New("stopped while waiting for the broker")

// connectBroker opens the broker. A networked broker that is unavailable
// (broker.ErrUnavailable: not reachable, or its stream cannot be created
// yet) is tried again with backoff until it answers, ctx ends
// (errStoppedWaiting) or --broker-start-timeout passes; any other error
// (a missing TLS file, a key Herald does not own) fails at once. The
// outage is logged once, as a running node logs one (package outage).
func (c *serveConfig) connectBroker(ctx context.Context, log *slog.Logger) (backend, error) {
	f := &c.broker
	var deadline time.Time
	attemptCtx := ctx
	if f.startTimeout > 0 {
		deadline = time.Now().Add(f.startTimeout)
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	out := outage.Log{Logger: log, Broker: f.kind}
	delay := brokerRetryFirst
	for attempt := 1; ; attempt++ {
		b, err := f.open(attemptCtx, c.retentionEvents, c.retentionAge, c.idempotencyWindow, log)
		if err == nil {
			out.Up()
			return b, nil
		}
		if ctx.Err() != nil {
			log.Info("stopped before the broker was reached", "broker", f.kind)
			return nil, errStoppedWaiting
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			return nil, err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, startTimeoutError(f, err)
		}
		out.Down(err, time.Now())
		wait := delay/2 + rand.N(delay/2)
		log.Debug("broker still unavailable: trying again", "broker", f.kind, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Info("stopped before the broker was reached", "broker", f.kind)
			return nil, errStoppedWaiting
		case <-attemptCtx.Done():
			// Without --broker-start-timeout attemptCtx is ctx, and this
			// case is as ready as the one above: a signal is not a timeout.
			t.Stop()
			if ctx.Err() != nil {
				log.Info("stopped before the broker was reached", "broker", f.kind)
				return nil, errStoppedWaiting
			}
			return nil, startTimeoutError(f, err)
		case <-t.C:
		}
		delay = min(2*delay, brokerRetryCap)
	}
}

func startTimeoutError(f *brokerFlags, last error) error {
	return fmt.Errorf("serve: --broker %s not reachable within --broker-start-timeout %v; last error: %w", f.kind, f.startTimeout, last)
}

// A standby answers on the node's listeners while it waits for its
// broker: HTTP GET /healthz 200 (the process is alive), /readyz and every
// other path 503, every gRPC call UNAVAILABLE and grpc.health.v1
// NOT_SERVING, so that an orchestrator keeps the node out of rotation
// without restarting it. stop hands the listeners on to the real server.
type standby struct {
	httpGate, grpcGate *gate
	http               *http.Server
	grpc               *grpc.Server
	httpDone, grpcDone chan struct{}
}

// startStandby serves on httpLn and grpcLn, with TLS where the real
// server will use it. The listeners must be TCP listeners.
func startStandby(httpLn, grpcLn net.Listener, httpTLS, grpcTLS *tls.Config, kind string) *standby {
	waiting := "waiting for the broker (" + kind + ")"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %s\n", waiting)
	})
	s := &standby{
		httpGate: &gate{Listener: httpLn},
		grpcGate: &gate{Listener: grpcLn},
		http:     &http.Server{Handler: mux, TLSConfig: httpTLS, ReadHeaderTimeout: 10 * time.Second},
		httpDone: make(chan struct{}),
		grpcDone: make(chan struct{}),
	}
	var opts []grpc.ServerOption
	if grpcTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(grpcTLS)))
	}
	opts = append(opts, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "herald is "+waiting+" and serves no calls yet")
	}))
	s.grpc = grpc.NewServer(opts...)
	hs := health.NewServer()
	for _, name := range []string{"", heraldv1.PublisherService_ServiceDesc.ServiceName,
		heraldv1.SubscriberService_ServiceDesc.ServiceName, heraldv1.SchemaService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthgrpc.HealthCheckResponse_NOT_SERVING)
	}
	healthgrpc.RegisterHealthServer(s.grpc, hs)
	go func() {
		defer close(s.httpDone)
		if httpTLS != nil {
			_ = s.http.ServeTLS(s.httpGate, "", "")
		} else {
			_ = s.http.Serve(s.httpGate)
		}
	}()
	go func() {
		defer close(s.grpcDone)
		_ = s.grpc.Serve(s.grpcGate)
	}()
	return s
}

// stop ends the standby servers and their connections, and returns the
// listeners, open, for the real server: connections accepted while it
// stopped come first from them.
func (s *standby) stop() (httpLn, grpcLn net.Listener) {
	s.grpc.Stop()
	_ = s.http.Close()
	<-s.httpDone
	<-s.grpcDone
	return s.httpGate.reopen(), s.grpcGate.reopen()
}

// A gate is a listener that a standby server can close without closing
// the socket beneath: Close makes Accept fail with net.ErrClosed (by a
// past deadline, which wakes a blocked Accept), and keeps any connection
// accepted meanwhile for the next server.
type gate struct {
	net.Listener
	closed atomic.Bool
	mu     sync.Mutex
	held   []net.Conn
}

func (g *gate) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if g.closed.Load() {
		if err == nil {
			g.mu.Lock()
			g.held = append(g.held, c)
			g.mu.Unlock()
		}
		return nil, net.ErrClosed
	}
	return c, err
}

// Close implements net.Listener, leaving the socket open.
func (g *gate) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	if d, ok := g.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(time.Unix(1, 0))
	}
	return nil
}

// reopen clears the deadline and returns the socket as a listener that
// first yields the held connections. Call it once the server that used
// the gate has returned from Serve.
func (g *gate) reopen() net.Listener {
	if d, ok := g.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(time.Time{})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.held) == 0 {
		return g.Listener
	}
	return &heldListener{Listener: g.Listener, held: g.held}
}

// A heldListener yields its held connections before accepting new ones.
type heldListener struct {
	net.Listener
	mu   sync.Mutex
	held []net.Conn
}

func (l *heldListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.held) > 0 {
		c := l.held[0]
		l.held = l.held[1:]
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}
