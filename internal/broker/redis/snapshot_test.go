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
