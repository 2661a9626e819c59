package jetstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker/brokertest"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/outagetest"
)

var prefixes atomic.Int64

// newPrefix returns a prefix no other broker of this test process uses, so
// that checks sharing a server have streams of their own.
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
	srv := jstest.Start(t)
	brokertest.Run(t, brokertest.Options{
		New: func(tb testing.TB, cfg brokertest.Config) bridge.Broker {
			return newBroker(tb, Options{
				URL:               srv.URL(),
				Prefix:            newPrefix(),
				MaxEvents:         cfg.MaxEvents,
				MaxAge:            cfg.MaxAge,
				IdempotencyWindow: cfg.IdempotencyWindow,
			})
		},
		NewNode: func(tb testing.TB, b bridge.Broker) bridge.Broker {
			return newBroker(tb, b.(*Broker).opts)
		},
	})
}

func TestOutage(t *testing.T) {
	srv := jstest.Start(t)
	outagetest.Run(t, outagetest.Options{
		New: func(tb testing.TB, log *slog.Logger) bridge.Broker {
			return newBroker(tb, Options{URL: srv.URL(), Prefix: newPrefix(), Timeout: time.Second, Logger: log})
		},
		Stop:    srv.Shutdown,
		Start:   srv.Restart,
		Timeout: time.Second,
	})
}
