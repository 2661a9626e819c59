package redis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
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

// One run of the publish script carrying everything a run can: events on
// several topics, interleaved, named once each; keyed and unkeyed events;
// a key repeated within the run and one published by an earlier run (both
// duplicates, with the first event's fingerprint); and a key that holds
// something else, refused by name while the rest of the run is appended.
func TestOneRunOfMixedEvents(t *testing.T) {
	r := newRetained(t, Options{})
	ctx := t.Context()
	earlier, err := r.b.Publish(ctx, &broker.Event{Topic: "mixed.b", Type: "t", TypeURL: "type.googleapis.com/t", IdempotencyKey: "old", Fingerprint: "fp-old"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.rdb.Set(ctx, r.b.keys.idemPrefix+"mixed.c\x00junk", "not a sequence", 0).Err(); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		res broker.PublishResult
		err error
	}
	evs := []*broker.Event{
		{Topic: "mixed.a", Payload: []byte("a1")},
		{Topic: "mixed.b", Payload: []byte("b1"), IdempotencyKey: "k1", Fingerprint: "fp-k1"},
		{Topic: "mixed.a", Payload: []byte("a2"), IdempotencyKey: "k2"},
		{Topic: "mixed.b", Payload: []byte("b-again"), IdempotencyKey: "k1", Fingerprint: "fp-other"},
		{Topic: "mixed.b", Payload: []byte("b-old"), IdempotencyKey: "old", Fingerprint: "fp-old"},
		{Topic: "mixed.c", Payload: []byte("c-junk"), IdempotencyKey: "junk"},
		{Topic: "mixed.c", Payload: []byte("c1")},
		{Topic: "mixed.a", Payload: []byte("a3")},
	}
	answers := make([]answer, len(evs))
	run := make([]*pendingAppend, len(evs))
	for i, ev := range evs {
		ev.Type, ev.TypeURL = "t", "type.googleapis.com/t"
		run[i] = &pendingAppend{ctx: ctx, start: time.Now(), ev: ev, data: wire.Append(nil, ev),
			done: func(res broker.PublishResult, err error) { answers[i] = answer{res, err} }}
	}
	r.b.sendRun(run)

	first := earlier.Seq + 1
	wantNew := map[int]uint64{0: first, 1: first + 1, 2: first + 2, 6: first + 3, 7: first + 4}
	for i, seq := range wantNew {
		if a := answers[i]; a.err != nil || a.res.Seq != seq || a.res.Duplicate {
			t.Errorf("event %d (%s): %+v, %v; want new with sequence %d", i, evs[i].Payload, a.res, a.err, seq)
		}
	}
	if a := answers[3]; a.err != nil || !a.res.Duplicate || a.res.Seq != first+1 || a.res.Fingerprint != "fp-k1" {
		t.Errorf("a key repeated within the run: %+v, %v; want a duplicate of sequence %d with fingerprint fp-k1", a.res, a.err, first+1)
	}
	if a := answers[4]; a.err != nil || !a.res.Duplicate || a.res.Seq != earlier.Seq || a.res.Fingerprint != "fp-old" {
		t.Errorf("a key of an earlier run: %+v, %v; want a duplicate of sequence %d with fingerprint fp-old", a.res, a.err, earlier.Seq)
	}
	if a := answers[5]; !errors.Is(a.err, broker.ErrUnavailable) || !strings.Contains(fmt.Sprint(a.err), "junk") {
		t.Errorf("a key holding something else: %+v, %v; want ErrUnavailable naming the key", a.res, a.err)
	}

	for topic, want := range map[string][]string{"mixed.a": {"a1", "a2", "a3"}, "mixed.b": {"", "b1"}, "mixed.c": {"c1"}} {
		p, _ := broker.ParsePattern(topic)
		res, err := r.b.Replay(ctx, []broker.Pattern{p}, broker.EventID{Epoch: r.b.Epoch()})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range res.Events {
			got = append(got, string(ev.Payload))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s holds %q; want %q", topic, got, want)
		}
	}
	names, err := r.rdb.ZRange(ctx, r.b.keys.topics, 0, -1).Result()
	if err != nil || !slices.Equal(names, []string{"mixed.a", "mixed.b", "mixed.c"}) {
		t.Errorf("the topic index holds %q, %v; want the three topics", names, err)
	}
	touched, err := r.rdb.ZCard(ctx, r.b.keys.touched).Result()
	if err != nil || touched != 3 {
		t.Errorf("%d topics touched, %v; want 3", touched, err)
	}
}
