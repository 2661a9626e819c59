package redis

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
)

// A Redis that lost its data (FLUSHALL, a restart without persistence) is
// another log: a snapshot then fails, rather than answer with an empty
// picture under the old epoch, and so do later calls.
func TestSnapshotAfterFlush(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "flush", Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
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
		t.Fatalf("Snapshot before the flush: %d events, %v; want the one", len(res.Events), err)
	}
	opts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		res, err := b.Snapshot(ctx, []broker.Pattern{p}, 10)
		if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "lost this log") {
			t.Errorf("Snapshot %d after the flush: %d events, Upto %d, %v; want ErrUnavailable naming the lost log", i+1, len(res.Events), res.Upto, err)
		}
	}
}

// The publish script adds a topic's name to the index that snapshots list
// only when its stream held nothing before: a topic that the sweep forgot,
// its events all aged out, is listed again once it is published to again,
// and a topic published to again while it has events stays listed.
func TestTopicIndexAfterSweep(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "index", MaxAge: 200 * time.Millisecond, Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	publish := func(topic string) {
		t.Helper()
		if _, err := b.Publish(ctx, &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t"}); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opts)
	defer rdb.Close()
	listed := func() []string {
		names, err := rdb.ZRange(ctx, b.keys.topics, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	publish("state.a")
	publish("state.a")
	if got := listed(); len(got) != 1 || got[0] != "state.a" {
		t.Fatalf("topics listed after two publishes: %q; want [state.a]", got)
	}
	poll.Until(t, 10*time.Second, "the sweep forgets state.a", func() bool { return len(listed()) == 0 })
	publish("state.a")
	if got := listed(); len(got) != 1 || got[0] != "state.a" {
		t.Fatalf("topics listed after a publish to a forgotten topic: %q; want [state.a]", got)
	}
	p, err := broker.ParsePattern("state.>")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.Snapshot(ctx, []broker.Pattern{p}, 10); err != nil || len(res.Events) != 1 || res.Events[0].Topic != "state.a" {
		t.Fatalf("Snapshot after the publish: %d events, %v; want state.a's", len(res.Events), err)
	}
}
