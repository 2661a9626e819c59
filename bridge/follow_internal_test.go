package bridge

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// A hub subscribes to its broker for its first subscriber; one that comes
// before the hub starts (an embedder registering before Serve) has start
// subscribe, and gets the events published after it.
func TestSubscriberBeforeStartIsFollowed(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	h := newHub(b, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	defer h.close()
	s, err := h.subscribe("", []broker.Pattern{mustPattern("early.a")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.following.Load() {
		t.Fatal("a hub that has not started subscribed to the broker")
	}
	if err := h.start(time.Hour); err != nil {
		t.Fatal(err)
	}
	if !h.following.Load() {
		t.Fatal("a hub that started with a subscriber did not subscribe to the broker")
	}
	if _, err := b.Publish(context.Background(), &broker.Event{Topic: "early.a", Type: "t", TypeURL: "type.googleapis.com/t"}); err != nil {
		t.Fatal(err)
	}
	if it, ok := s.queue.pop(); !ok || it.ev == nil || it.ev.Topic != "early.a" {
		t.Fatalf("the early subscriber's queue holds %+v (%v); want the event published after start", it, ok)
	}
}
