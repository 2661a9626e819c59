package jetstream

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
)

// TestSubscriptionOutlivesItsConsumer: when nats.go closes a
// subscription's message iterator underneath it (it does when resetting
// its ordered consumer fails, as when the stream's leader is lost while it
// resets), the subscription follows the stream again from the last event
// it delivered: the events published meanwhile and after all arrive, once
// and in order, where the node used to go deaf with its streams open.
func TestSubscriptionOutlivesItsConsumer(t *testing.T) {
	srv := jstest.Start(t)
	var mu sync.Mutex
	var followers []*follower
	onFollow = func(f *follower) {
		mu.Lock()
		defer mu.Unlock()
		followers = append(followers, f)
	}
	t.Cleanup(func() { onFollow = nil })

	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "outlive", Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan uint64, 100)
	if err := b.Subscribe(ctx, func(ev *broker.Event) { got <- ev.Seq }); err != nil {
		t.Fatal(err)
	}
	publish := func() uint64 {
		t.Helper()
		res, err := b.Publish(ctx, &broker.Event{Topic: "chat.lobby", Type: "t", TypeURL: "type.googleapis.com/t"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Seq
	}
	want := []uint64{publish()}
	if seq := <-got; seq != want[0] {
		t.Fatalf("first delivery: seq %d, want %d", seq, want[0])
	}

	mu.Lock()
	f := followers[len(followers)-1]
	mu.Unlock()
	f.current().Stop() // as nats.go does when it gives up on the consumer
	for range 5 {
		want = append(want, publish())
	}
	for _, w := range want[1:] {
		select {
		case seq := <-got:
			if seq != w {
				t.Fatalf("after the consumer was closed underneath: seq %d, want %d", seq, w)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("after the consumer was closed underneath, event %d never arrived: the subscription went deaf", w)
		}
	}
}
