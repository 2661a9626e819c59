// Package brokertest is the conformance suite for broker.Broker: every
// backend (memory, NATS JetStream, Redis Streams ...) runs the same checks
// from its own tests, so that the contract written on broker.Broker holds
// whichever one cmd/herald wires in.
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, brokertest.Options{
//			New: func(t testing.TB, cfg brokertest.Config) broker.Broker { ... },
//		})
//	}
//
// A backend whose server several nodes share calls RunNetwork instead,
// which also runs the multi-node checks and the outage check
// (internal/broker/outagetest) on servers the backend starts.
//
// The suite knows nothing of any backend's internals: it watches only what
// the interface shows (Publish results, deliveries, Replay and Snapshot
// results, errors). The Snapshot checks skip a backend that is not a
// broker.Snapshotter.
// It never sleeps; it waits for conditions, bounded by Options.Timeout.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// Options describe the backend under test.
type Options struct {
	// New returns a fresh, empty broker with the given retention limits.
	// The suite closes it; New may register its own cleanups on t (a
	// server, a stream to delete). Brokers from different calls must not
	// see each other's events.
	New func(t testing.TB, cfg Config) broker.Broker
	// NewNode, when set, returns another broker handle on the same log as
	// b, as a second Herald node sharing the backend would have. The suite
	// closes it. Leave it nil for single-node backends; the multi-node
	// checks are then skipped.
	NewNode func(t testing.TB, b broker.Broker) broker.Broker
	// LargePayload is the payload size of the large-event check; 0 means
	// 1 MiB. A backend with a smaller message limit sets its own.
	LargePayload int
	// Timeout bounds every wait for something the backend does on its own
	// time (a delivery, age retention, Close); 0 means 10s.
	Timeout time.Duration
}

// Config is the retention a check asks the broker for. The suite always
// sets every field.
type Config struct {
	// MaxEvents is how many events each topic retains.
	MaxEvents int
	// MaxAge is how long an event is retained.
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered.
	IdempotencyWindow time.Duration
}

// roomy is the retention of checks that are not about retention: nothing
// they publish is removed while they run.
var roomy = Config{MaxEvents: 100_000, MaxAge: time.Hour, IdempotencyWindow: time.Hour}

// Run runs every check against the backend opts describes, each as a
// subtest.
func Run(t *testing.T, opts Options) {
	if opts.New == nil {
		t.Fatal("brokertest: Options.New is nil")
	}
	if opts.LargePayload <= 0 {
		opts.LargePayload = 1 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	s := &suite{opts: opts}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Epoch", s.testEpoch},
		{"Publish", s.testPublish},
		{"Subscribe", s.testSubscribe},
		{"SubscribeEverySubscription", s.testSubscribeEverySubscription},
		{"SubscribeCancel", s.testSubscribeCancel},
		{"Replay", s.testReplay},
		{"ReplayOtherEpoch", s.testReplayOtherEpoch},
		{"RetentionByCount", s.testRetentionByCount},
		{"RetentionByAge", s.testRetentionByAge},
		{"Idempotency", s.testIdempotency},
		{"IdempotencyAfterRetention", s.testIdempotencyAfterRetention},
		{"IdempotencyWindow", s.testIdempotencyWindow},
		{"ConcurrentPublishers", s.testConcurrentPublishers},
		{"Pipeline", s.testPipeline},
		{"PipelineAcceptedMeansStored", s.testPipelineAcceptedMeansStored},
		{"PipelineIdempotency", s.testPipelineIdempotency},
		{"PipelineRetention", s.testPipelineRetention},
		{"LargeEvent", s.testLargeEvent},
		{"CancelledPublish", s.testCancelledPublish},
		{"CloseWhileBusy", s.testCloseWhileBusy},
		{"MultiNode", s.testMultiNode},
		{"SchemaStore", s.testSchemaStore},
		{"Snapshot", s.testSnapshot},
		{"SnapshotLimit", s.testSnapshotLimit},
		{"SnapshotDeletion", s.testSnapshotDeletion},
		{"SnapshotRetentionByCount", s.testSnapshotRetentionByCount},
		{"SnapshotRetentionByAge", s.testSnapshotRetentionByAge},
		{"SnapshotConcurrentPublishers", s.testSnapshotConcurrentPublishers},
		{"SnapshotManyTopics", s.testSnapshotManyTopics},
		{"SnapshotMultiNode", s.testSnapshotMultiNode},
		{"SnapshotClosed", s.testSnapshotClosed},
		{"Presence", s.testPresence},
		{"Revoker", s.testRevoker},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct {
	opts Options
}

// newBroker returns a broker from opts.New that is closed when tb ends.
func (s *suite) newBroker(tb testing.TB, cfg Config) broker.Broker {
	tb.Helper()
	b := s.opts.New(tb, cfg)
	if b == nil {
		tb.Fatal("Options.New returned nil")
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// newNode returns another handle on b's log, closed when tb ends; it skips
// tb when the backend serves one node only.
func (s *suite) newNode(tb testing.TB, b broker.Broker) broker.Broker {
	tb.Helper()
	if s.opts.NewNode == nil {
		tb.Skip("single-node backend: Options.NewNode is nil")
	}
	n := s.opts.NewNode(tb, b)
	if n == nil {
		tb.Fatal("Options.NewNode returned nil")
	}
	tb.Cleanup(func() { _ = n.Close() })
	return n
}

// ctx is the context of a check's broker calls. It ends with the check, or
// well after any wait of the check would have failed, so that a hung
// backend fails its check instead of the whole run.
func (s *suite) ctx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 6*s.opts.Timeout)
	tb.Cleanup(cancel)
	return ctx
}
