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

// TestSubscriptionSaysWhatRetentionTookFromIt: a node whose subscription
// falls further behind a topic than the stream retains finds events gone
// before it could deliver them. It must say so, where it used to deliver
// what was left and its streams skipped the rest without a herald.gap:
// where it finds the hole, before any later event, a LostSpanningType
// marker (streams of several topics end there), and before the next event
// of each topic that lost events a LostType marker for it, also for a
// topic it had not delivered anything of before.
func TestSubscriptionSaysWhatRetentionTookFromIt(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "behind", Timeout: 5 * time.Second, MaxEvents: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	type got struct {
		typ, topic string
		seq        uint64
	}
	delivered := make(chan got, 5000)
	release := make(chan struct{})
	first := true
	if err := b.Subscribe(ctx, func(ev *broker.Event) {
		delivered <- got{ev.Type, ev.Topic, ev.Seq}
		if first && ev.Topic == "chat.slow" {
			first = false
			<-release // this node falls behind
		}
	}); err != nil {
		t.Fatal(err)
	}
	topicOf := map[uint64]string{}
	publish := func(topic string) uint64 {
		t.Helper()
		res, err := b.Publish(ctx, &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t"})
		if err != nil {
			t.Fatal(err)
		}
		topicOf[res.Seq] = topic
		return res.Seq
	}
	firstSeq := publish("chat.slow")
	if g := <-delivered; g.seq != firstSeq {
		t.Fatalf("first delivery %+v, want seq %d", g, firstSeq)
	}
	// While the subscriber is held, more events than the consumer fetches
	// ahead (nats.go's default is 500): the stream keeps 3 of a topic, so
	// events go before the subscription reads them. chat.quiet loses its
	// first 2 of 5 and is new to the subscription; chat.calm loses
	// nothing, and its event comes after the holes and before the next
	// events of chat.slow.
	for range 1500 {
		publish("chat.slow")
	}
	for range 5 {
		publish("chat.quiet")
	}
	calm := publish("chat.calm")
	var last uint64
	for range 10 {
		last = publish("chat.slow")
	}
	close(release)
	var rest []got
	for len(rest) == 0 || rest[len(rest)-1].seq != last {
		select {
		case g := <-delivered:
			rest = append(rest, g)
		case <-time.After(30 * time.Second):
			t.Fatalf("after the hold: %d deliveries, waiting for seq %d", len(rest), last)
		}
	}

	// Check each event against what was published before it and what
	// this subscription delivered before it.
	var markers []got
	prevSeq := firstSeq
	lastOf := map[string]uint64{"chat.slow": firstSeq}
	var spans, losses int
	for _, g := range rest {
		if g.typ == broker.LostType || g.typ == broker.LostSpanningType {
			markers = append(markers, g)
			continue
		}
		var spanned, named bool
		for _, m := range markers {
			switch {
			case m.seq != g.seq:
				t.Fatalf("a %s marker for %q names seq %d, but the event after it is %d", m.typ, m.topic, m.seq, g.seq)
			case m.typ == broker.LostSpanningType:
				spanned = true
			case m.topic == g.topic:
				named = true
			default:
				t.Fatalf("a %s marker for %q stands before an event of %q", m.typ, m.topic, g.topic)
			}
		}
		markers = markers[:0]
		hole := g.seq > prevSeq+1
		switch {
		case hole && !spanned:
			t.Fatalf("events %d to %d went missing with no %s marker before the next event (%s)", prevSeq+1, g.seq-1, broker.LostSpanningType, g.topic)
		case !hole && spanned:
			t.Fatalf("a %s marker before seq %d, where nothing was missing", broker.LostSpanningType, g.seq)
		}
		missing := 0
		for q := lastOf[g.topic] + 1; q < g.seq; q++ {
			if topicOf[q] == g.topic {
				missing++
			}
		}
		switch {
		case missing > 0 && !named:
			t.Fatalf("%d events of %s before seq %d went missing with no %s marker for it", missing, g.topic, g.seq, broker.LostType)
		case missing == 0 && named && lastOf[g.topic] != 0:
			// (A topic new to the subscription after a hole may get one
			// where nothing is missing: its first event chains to just
			// below the stream's first sequence, which cannot tell new
			// from aged out, as Replay errs too.)
			t.Fatalf("a %s marker for %s before seq %d, where none of its events was missing", broker.LostType, g.topic, g.seq)
		}
		if spanned {
			spans++
		}
		if named {
			losses++
		}
		if g.seq == calm && spans == 0 {
			t.Fatalf("chat.calm's event (seq %d) came before any hole: the test did not hold the subscription long enough", calm)
		}
		prevSeq, lastOf[g.topic] = g.seq, g.seq
	}
	if spans == 0 || lastOf["chat.quiet"] == 0 || losses < 2 {
		t.Fatalf("%d holes marked, %d topics' losses named (chat.quiet last %d): the test did not hold the subscription long enough", spans, losses, lastOf["chat.quiet"])
	}
	// Caught up, the next event comes with no marker.
	next := publish("chat.slow")
	if g := <-delivered; g.typ != "t" || g.seq != next {
		t.Fatalf("the next event came as %+v, want seq %d and no marker", g, next)
	}
}
