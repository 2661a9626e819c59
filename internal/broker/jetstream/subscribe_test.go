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
// before it could deliver them. It must say so (a broker.LostType marker
// before the next event of any topic), where it used to deliver what was
// left and its streams skipped the rest without a herald.gap.
func TestSubscriptionSaysWhatRetentionTookFromIt(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "behind", Timeout: 5 * time.Second, MaxEvents: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	type got struct {
		typ string
		seq uint64
	}
	delivered := make(chan got, 2000)
	release := make(chan struct{})
	first := true
	if err := b.Subscribe(ctx, func(ev *broker.Event) {
		delivered <- got{ev.Type, ev.Seq}
		if first && ev.Topic == "chat.slow" {
			first = false
			<-release // this node falls behind
		}
	}); err != nil {
		t.Fatal(err)
	}
	publish := func(topic string) uint64 {
		t.Helper()
		res, err := b.Publish(ctx, &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Seq
	}
	firstSeq := publish("chat.slow")
	if g := <-delivered; g.seq != firstSeq {
		t.Fatalf("first delivery %+v, want seq %d", g, firstSeq)
	}
	// While the subscriber is held, more events than the consumer fetches
	// ahead (nats.go's default is 500): the stream keeps 3, so events of
	// the topic go before the subscription reads them.
	// Then one event of another topic, which the stream keeps, after the
	// hole and before the topic's next event: a stream of both (chat.>)
	// must hear of the loss before it.
	var seqs []uint64
	for range 1500 {
		seqs = append(seqs, publish("chat.slow"))
	}
	calm := publish("chat.calm")
	for range 10 {
		seqs = append(seqs, publish("chat.slow"))
	}
	close(release)
	var rest []got
	for len(rest) == 0 || rest[len(rest)-1].seq != seqs[len(seqs)-1] {
		select {
		case g := <-delivered:
			rest = append(rest, g)
		case <-time.After(30 * time.Second):
			t.Fatalf("after the hold: %+v, waiting for seq %d", rest, seqs[len(seqs)-1])
		}
	}
	// What the consumer had fetched ahead arrives, and the rest of the
	// hold went (the stream kept only 3). Every hole in the sequence comes
	// right after a marker naming the event after it, and no marker stands
	// where nothing is missing (the consumer may meet more than one hole).
	prev, markers := firstSeq, 0
	for i := 0; i < len(rest); i++ {
		g := rest[i]
		if g.typ == broker.LostType {
			markers++
			switch {
			case i+1 >= len(rest) || rest[i+1].typ == broker.LostType || rest[i+1].seq != g.seq:
				t.Fatalf("the marker at %d (seq %d) is not followed by the event it names", i, g.seq)
			case g.seq == prev+1:
				t.Fatalf("a marker at seq %d, where nothing was missing", g.seq)
			}
			prev = rest[i+1].seq
			i++
			continue
		}
		if g.seq != prev+1 {
			t.Fatalf("events %d to %d went missing with no %s marker", prev+1, g.seq-1, broker.LostType)
		}
		prev = g.seq
	}
	for i, g := range rest {
		if g.seq == calm && g.typ != broker.LostType && (i == 0 || rest[i-1].typ != broker.LostType) {
			t.Fatalf("chat.calm's event (seq %d) came after lost events of chat.slow with no marker before it", calm)
		}
	}
	if markers == 0 {
		t.Fatalf("events %d to %d arrived as %d deliveries: none was lost, so the test did not hold the subscription long enough", seqs[0], seqs[len(seqs)-1], len(rest))
	}
	// Caught up, the next event comes with no marker.
	next := publish("chat.slow")
	if g := <-delivered; g.typ == broker.LostType || g.seq != next {
		t.Fatalf("the next event came as %+v, want seq %d and no marker", g, next)
	}
}
