package redis

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/brokertest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
)

// The outage check kills a server that fsyncs every write, as a crash
// would; the others need no fsync.
func TestConformance(t *testing.T) {
	durable := redistest.Start(t, redistest.Options{Durable: true})
	brokertest.RunNetwork(t, brokertest.Network{New: newBroker, Server: redistest.Start(t, redistest.Options{}), Durable: durable})
}

// BenchmarkPublish: one script call per event; Redis runs them one at a
// time, whatever the topic.
func BenchmarkPublish(b *testing.B) {
	brokertest.BenchmarkNetwork(b, brokertest.Network{New: newBroker, Server: redistest.Start(b, redistest.Options{})})
}

func newBroker(ctx context.Context, c brokertest.NetworkConfig) (broker.Broker, error) {
	return New(ctx, Options{URL: c.URL, Prefix: c.Prefix, MaxEvents: c.MaxEvents, MaxAge: c.MaxAge, IdempotencyWindow: c.IdempotencyWindow, Timeout: c.Timeout, Logger: c.Logger})
}
