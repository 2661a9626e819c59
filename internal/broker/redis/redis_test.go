package redis

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/brokertest"
	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
)

var prefixes atomic.Int64

// newPrefix returns a prefix no other broker of this test process uses, so
// that checks sharing a server have logs of their own.
func newPrefix() string {
	return fmt.Sprintf("t%d", prefixes.Add(1))
}

func newBroker(tb testing.TB, opts Options) *Broker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := New(ctx, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	brokertest.Run(t, brokertest.Options{
		New: func(tb testing.TB, cfg brokertest.Config) broker.Broker {
			return newBroker(tb, Options{
				URL:               srv.URL(),
				Prefix:            newPrefix(),
				MaxEvents:         cfg.MaxEvents,
				MaxAge:            cfg.MaxAge,
				IdempotencyWindow: cfg.IdempotencyWindow,
			})
		},
		NewNode: func(tb testing.TB, b broker.Broker) broker.Broker {
			return newBroker(tb, b.(*Broker).opts)
		},
	})
}

func TestOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Durable: true})
	outagetest.Run(t, outagetest.Options{
		New: func(tb testing.TB, log *slog.Logger) broker.Broker {
			return newBroker(tb, Options{URL: srv.URL(), Prefix: newPrefix(), Timeout: time.Second, Logger: log})
		},
		Stop:    srv.Kill,
		Start:   srv.Restart,
		Timeout: time.Second,
	})
}

// BenchmarkPublish measures publish round trips to a local redis-server:
// one topic, and one topic per goroutine.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	br := newBroker(b, Options{URL: srv.URL(), Prefix: newPrefix()})
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
