package redis

import (
	"testing"

	"github.com/heraldhq/herald/internal/broker"
)

// A Redis that lost its script cache (restarted, or SCRIPT FLUSH) answers
// the publish call's EVALSHA with NOSCRIPT: the run is sent again with the
// script itself, and the event is appended once.
func TestPublishAfterRedisLostItsScripts(t *testing.T) {
	r := newRetained(t, Options{})
	first := r.publish("scripts.a")
	if err := r.rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	second := r.publish("scripts.a")
	if second != first+1 {
		t.Fatalf("after SCRIPT FLUSH the publish got sequence %d; want %d", second, first+1)
	}
	if n := r.stored("scripts.a"); n != 2 {
		t.Fatalf("the topic holds %d events; want 2", n)
	}
	all, _ := broker.ParsePattern("scripts.a")
	res, err := r.b.Replay(t.Context(), []broker.Pattern{all}, broker.EventID{Epoch: r.b.Epoch()})
	if err != nil || len(res.Events) != 2 {
		t.Fatalf("Replay: %d events, %v; want both", len(res.Events), err)
	}
}
