package jetstream

import (
	"log/slog"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/poll"
)

// TestPresenceOutlivesTheServersMemory: the presence bucket lives in the
// NATS servers' memory, so a NATS that restarts comes back without it.
// Reports after the restart must make it again, where each used to fail
// (an outage logged and ended with every report) until the node
// restarted.
func TestPresenceOutlivesTheServersMemory(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "presence", Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.ReportPresence(ctx, "node-a", []byte("before"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	// Reconnecting takes a moment; once it has, a report must succeed.
	var last error
	poll.Until(t, 30*time.Second, "a presence report after the restart to succeed", func() bool {
		last = b.ReportPresence(ctx, "node-a", []byte("after"), time.Minute)
		return last == nil
	})
	got, err := b.Presence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["node-a"]) != "after" {
		t.Fatalf("presence after the restart: %q, want node-a's report \"after\"", got)
	}
}
