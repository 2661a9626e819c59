package brokertest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outagetest"
)

// A Network is a backend whose server several Herald nodes share (NATS
// JetStream, Redis Streams), for RunNetwork and BenchmarkNetwork.
type Network struct {
	// New connects a broker to a server as cfg says. Brokers on one
	// server with different Prefixes must not see each other's events;
	// two with the same cfg are two nodes on one log.
	New func(ctx context.Context, cfg NetworkConfig) (broker.Broker, error)
	// Server serves the conformance checks and the benchmarks.
	Server Server
	// Durable serves the outage check: what it acknowledged survives Stop
	// and Restart. It may be Server, if that is durable.
	Durable Server
}

// A Server is a backend's server, running for one test.
type Server interface {
	URL() string
	// Stop stops the server, as an operator or a crash would; Restart
	// starts it again at the same URL.
	Stop()
	Restart()
}

// NetworkConfig is the broker a check asks a Network for.
type NetworkConfig struct {
	Config        // retention; zero values mean the backend's defaults
	URL    string // the server's
	Prefix string // names the log on the server; unique in the test process
	// Timeout is the call timeout; 0 means the backend's default.
	Timeout time.Duration
	// Logger receives the broker's log lines; nil means the default.
	Logger *slog.Logger
}

var prefixes atomic.Int64

// newPrefix returns a prefix no other broker of the test process uses, so
// that checks sharing a server have logs of their own.
func newPrefix() string {
	return fmt.Sprintf("t%d", prefixes.Add(1))
}

// connect returns a broker from n.New, closed when tb ends.
func (n Network) connect(tb testing.TB, cfg NetworkConfig) broker.Broker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := n.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// RunNetwork runs the conformance suite (Run, with two nodes sharing a
// log for the multi-node checks) on n.Server, and the outage check
// (outagetest) on n.Durable as the subtest Outage.
func RunNetwork(t *testing.T, n Network) {
	var mu sync.Mutex
	configs := make(map[broker.Broker]NetworkConfig)
	Run(t, Options{
		New: func(tb testing.TB, cfg Config) broker.Broker {
			c := NetworkConfig{Config: cfg, URL: n.Server.URL(), Prefix: newPrefix()}
			b := n.connect(tb, c)
			mu.Lock()
			configs[b] = c
			mu.Unlock()
			return b
		},
		NewNode: func(tb testing.TB, b broker.Broker) broker.Broker {
			mu.Lock()
			c, ok := configs[b]
			mu.Unlock()
			if !ok {
				tb.Fatal("NewNode: not a broker of this check")
			}
			return n.connect(tb, c)
		},
	})
	t.Run("Outage", func(t *testing.T) {
		outagetest.Run(t, outagetest.Options{
			New: func(tb testing.TB, log *slog.Logger) broker.Broker {
				return n.connect(tb, NetworkConfig{URL: n.Durable.URL(), Prefix: newPrefix(), Timeout: time.Second, Logger: log})
			},
			Stop:    n.Durable.Stop,
			Start:   n.Durable.Restart,
			Timeout: time.Second,
		})
	})
}

// BenchmarkNetwork measures publish round trips to n.Server: to one topic,
// and to one topic per goroutine; for a broker.Pipeliner, publishes to one
// topic with 256 in flight, as a PublishStream sends them; and, for a
// broker.Snapshotter, a snapshot of 1,000 topics.
func BenchmarkNetwork(b *testing.B, n Network) {
	br := n.connect(b, NetworkConfig{URL: n.Server.URL(), Prefix: newPrefix()})
	b.Run("Snapshot1000Topics", func(b *testing.B) { benchmarkSnapshot(b, n, 1000) })
	if pl, ok := br.(broker.Pipeliner); ok {
		b.Run("OneTopicPipelined", func(b *testing.B) { benchmarkPipelined(b, pl, 256) })
	}
	payload := make([]byte, 512)
	for _, perGoroutine := range []bool{false, true} {
		b.Run(map[bool]string{false: "OneTopic", true: "TopicPerGoroutine"}[perGoroutine], func(b *testing.B) {
			var n atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				topic := "bench.one"
				if perGoroutine {
					topic = fmt.Sprintf("bench.t%d", n.Add(1))
				}
				for pb.Next() {
					if _, err := br.Publish(context.Background(), &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t", Payload: payload}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// benchmarkPipelined publishes to one topic through pl with window
// publishes in flight.
func benchmarkPipelined(b *testing.B, pl broker.Pipeliner, window int) {
	payload := make([]byte, 512)
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	b.ReportAllocs()
	for b.Loop() {
		slots <- struct{}{}
		wg.Add(1)
		pl.PublishAsync(context.Background(), &broker.Event{Topic: "bench.pipelined", Type: "t", TypeURL: "type.googleapis.com/t", Payload: payload}, func(_ broker.PublishResult, err error) {
			if err != nil {
				b.Error(err)
			}
			<-slots
			wg.Done()
		})
	}
	wg.Wait()
}

// benchmarkSnapshot measures a snapshot of topics topics, one 512-byte
// event each, on a log of their own.
func benchmarkSnapshot(b *testing.B, n Network, topics int) {
	br := n.connect(b, NetworkConfig{URL: n.Server.URL(), Prefix: newPrefix()})
	snap, ok := br.(broker.Snapshotter)
	if !ok {
		b.Skipf("%T is not a broker.Snapshotter", br)
	}
	ctx := context.Background()
	payload := make([]byte, 512)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < topics; i += 16 {
				if _, err := br.Publish(ctx, &broker.Event{Topic: fmt.Sprintf("bench.snap.t%d", i), Type: "t", TypeURL: "type.googleapis.com/t", Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	p, err := broker.ParsePattern("bench.snap.>")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := snap.Snapshot(ctx, []broker.Pattern{p}, topics)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Events) != topics || res.More {
			b.Fatalf("Snapshot: %d events, More %v; want %d", len(res.Events), res.More, topics)
		}
	}
}
