package jetstream

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
)

// A stream deleted and created again is another log: a node of the old
// one fails its snapshots, rather than answer with the new stream's
// sequences under the old epoch.
func TestSnapshotAfterStreamRecreated(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	opts := Options{URL: srv.URL(), Prefix: "recreated", Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)}
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Publish(ctx, &broker.Event{Topic: "state.a", Type: "t", TypeURL: "type.googleapis.com/t"}); err != nil {
		t.Fatal(err)
	}
	p, err := broker.ParsePattern("state.>")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.Snapshot(ctx, []broker.Pattern{p}, 10); err != nil || len(res.Events) != 1 {
		t.Fatalf("Snapshot before: %d events, %v; want the one", len(res.Events), err)
	}

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "RECREATED"); err != nil {
		t.Fatal(err)
	}
	other, err := New(ctx, opts) // creates the stream again
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Publish(ctx, &broker.Event{Topic: "state.b", Type: "t", TypeURL: "type.googleapis.com/t"}); err != nil {
		t.Fatal(err)
	}
	res, err := b.Snapshot(ctx, []broker.Pattern{p}, 10)
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "deleted and created again") {
		t.Errorf("Snapshot on the old stream's node: %d events, Upto %d, %v; want ErrUnavailable naming the recreated stream", len(res.Events), res.Upto, err)
	}
	if res, err := other.Snapshot(ctx, []broker.Pattern{p}, 10); err != nil || len(res.Events) != 1 || res.Events[0].Topic != "state.b" {
		t.Errorf("Snapshot on the new stream's node: %d events, %v; want state.b's", len(res.Events), err)
	}
}
