package jetstream

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/brokertest"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
)

// The servers are embedded in the test process; their file stores make
// them durable.
func TestConformance(t *testing.T) {
	brokertest.RunNetwork(t, brokertest.Network{New: newBroker, Server: jstest.Start(t), Durable: jstest.Start(t)})
}

// BenchmarkPublish: one topic is serialized per node by the Herald-Prev
// chain; topics publish in parallel.
func BenchmarkPublish(b *testing.B) {
	brokertest.BenchmarkNetwork(b, brokertest.Network{New: newBroker, Server: jstest.Start(b)})
}

func newBroker(ctx context.Context, c brokertest.NetworkConfig) (broker.Broker, error) {
	return New(ctx, Options{URL: c.URL, Prefix: c.Prefix, MaxEvents: c.MaxEvents, MaxAge: c.MaxAge, IdempotencyWindow: c.IdempotencyWindow, Timeout: c.Timeout, Logger: c.Logger})
}
