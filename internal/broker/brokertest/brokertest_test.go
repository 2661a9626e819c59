package brokertest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/brokertest"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// The multi-node checks run on JetStream and Redis in their own packages;
// here they run on handles that share one memory broker, as nodes share a
// JetStream stream, so that the checks themselves are known to pass on a
// conforming backend without a network.
func TestMultiNodeChecks(t *testing.T) {
	brokertest.Run(t, brokertest.Options{
		New: func(t testing.TB, cfg brokertest.Config) broker.Broker {
			return memory.New(memory.Options{MaxEvents: cfg.MaxEvents, MaxAge: cfg.MaxAge, IdempotencyWindow: cfg.IdempotencyWindow})
		},
		NewNode: func(t testing.TB, b broker.Broker) broker.Broker {
			ctx, cancel := context.WithCancel(context.Background())
			return &node{Broker: b, ctx: ctx, cancel: cancel}
		},
	})
}

// A node is another handle on a shared broker: closing it ends its own
// subscriptions and calls, not the shared log. The shared broker must be a
// broker.SchemaStore, a broker.Snapshotter, a broker.PresenceStore and a
// broker.Revoker.
type node struct {
	broker.Broker
	ctx    context.Context // ends when the node closes
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
}

func (n *node) check() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("%w: node is closed", broker.ErrClosed)
	}
	return nil
}

func (n *node) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	if err := n.check(); err != nil {
		return broker.PublishResult{}, err
	}
	return n.Broker.Publish(ctx, ev)
}

func (n *node) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	if err := n.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(n.ctx, cancel)
	return n.Broker.Subscribe(ctx, deliver)
}

func (n *node) Replay(ctx context.Context, patterns []broker.Pattern, after broker.EventID) (broker.ReplayResult, error) {
	if err := n.check(); err != nil {
		return broker.ReplayResult{}, err
	}
	return n.Broker.Replay(ctx, patterns, after)
}

func (n *node) Snapshot(ctx context.Context, patterns []broker.Pattern, limit int) (broker.SnapshotResult, error) {
	if err := n.check(); err != nil {
		return broker.SnapshotResult{}, err
	}
	return n.Broker.(broker.Snapshotter).Snapshot(ctx, patterns, limit)
}

func (n *node) SaveSchemas(ctx context.Context, set []byte) error {
	if err := n.check(); err != nil {
		return err
	}
	return n.Broker.(broker.SchemaStore).SaveSchemas(ctx, set)
}

func (n *node) LoadSchemas(ctx context.Context, skip int) ([][]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	return n.Broker.(broker.SchemaStore).LoadSchemas(ctx, skip)
}

func (n *node) ReportPresence(ctx context.Context, node string, report []byte, ttl time.Duration) error {
	if err := n.check(); err != nil {
		return err
	}
	return n.Broker.(broker.PresenceStore).ReportPresence(ctx, node, report, ttl)
}

func (n *node) Presence(ctx context.Context) (map[string][]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	return n.Broker.(broker.PresenceStore).Presence(ctx)
}

func (n *node) Revoke(ctx context.Context, subject string, until time.Time) error {
	if err := n.check(); err != nil {
		return err
	}
	return n.Broker.(broker.Revoker).Revoke(ctx, subject, until)
}

func (n *node) Revocations(ctx context.Context) ([]broker.Revocation, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	return n.Broker.(broker.Revoker).Revocations(ctx)
}

func (n *node) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	return nil
}
