package redis

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
)

// TestSubscriptionSaysWhatRetentionTookFromIt: a node whose subscription
// falls behind the fan-in stream (it keeps FanInWindow) catches up from the
// topic streams, which keep MaxEvents per topic. Events of a busy topic are
// gone from both by then: the subscription must say so (a
// broker.LostType marker for the topic, before any later event), where it
// used to log a line and deliver what was left, and its streams skipped the
// rest without a herald.gap. A quiet topic whose events the topic stream
// still holds loses nothing and gets no marker, and what the topic streams
// hold is delivered.
func TestSubscriptionSaysWhatRetentionTookFromIt(t *testing.T) {
	const keep = 3
	h := holdSubscription(t, Options{MaxEvents: keep})
	h.publish("chat.calm")
	for range 50 {
		h.publish("chat.slow")
	}
	h.publish("chat.calm") // 2 of chat.calm: its stream keeps both
	h.fallBehind("chat.slow")
	// The fan-in stream drops chat.slow's last events too: the topic
	// stream holds them, after those it lost.
	h.fallBehind("chat.other")
	rest := h.release()
	markers := checkLosses(t, h.published, h.first, rest)
	if markers["chat.slow"] != 1 || markers["chat.other"] != 1 {
		t.Fatalf("markers %v: the subscription fell behind the fan-in stream and each topic kept only %d events, so chat.slow and chat.other lost events, each once", markers, keep)
	}
	if markers["chat.calm"] != 0 || markers[""] != 0 {
		t.Errorf("markers %v: chat.calm lost nothing", markers)
	}
	delivered := make(map[uint64]bool)
	for _, ev := range rest {
		delivered[ev.Seq] = ev.Type != broker.LostType
	}
	for _, topic := range []string{"chat.calm", "chat.slow", "chat.other"} {
		var seqs []uint64
		for _, ev := range h.published {
			if ev.Topic == topic {
				seqs = append(seqs, ev.Seq)
			}
		}
		for _, seq := range seqs[max(0, len(seqs)-keep):] {
			if !delivered[seq] {
				t.Errorf("%s's event %d, which its stream retains, was not delivered", topic, seq)
			}
		}
	}
	h.caughtUp("chat.slow")
}

// TestSubscriptionCatchesUpWithoutMarkers: a subscription that fell behind
// the fan-in stream while the topic streams still hold every event it
// missed delivers them all, in order, with no marker.
func TestSubscriptionCatchesUpWithoutMarkers(t *testing.T) {
	h := holdSubscription(t, Options{MaxEvents: 10_000})
	h.publish("chat.calm")
	h.fallBehind("chat.slow")
	rest := h.release()
	if markers := checkLosses(t, h.published, h.first, rest); len(markers) != 0 {
		t.Fatalf("markers %v, where the topic streams held every event", markers)
	}
	h.caughtUp("chat.slow")
}

// TestSubscriptionThatCannotNameTheTopicsMarksEvery: when Redis can no
// longer tell which topics lost events after the subscription's position
// (more topics were cut than it keeps marks for, so their marks were folded
// into the floor), the subscription delivers one marker for every topic
// (an empty Topic) before any later event, never silence.
func TestSubscriptionThatCannotNameTheTopicsMarksEvery(t *testing.T) {
	h := holdSubscription(t, Options{MaxEvents: 3})
	for range 50 {
		h.publish("chat.slow")
	}
	h.fallBehind("chat.slow")
	// As the sweeper does with more than maxCutMarks marks: the lowest
	// fold into the floor, and chat.slow's mark with them.
	if err := h.rdb.Set(t.Context(), h.b.keys.cutFloor, strconv.FormatUint(h.published[len(h.published)-1].Seq, 10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := h.rdb.Del(t.Context(), h.b.keys.cut).Err(); err != nil {
		t.Fatal(err)
	}
	rest := h.release()
	markers := checkLosses(t, h.published, h.first, rest)
	if markers[""] != 1 || len(markers) != 1 {
		t.Fatalf("markers %v, want one for every topic (an empty Topic)", markers)
	}
	h.caughtUp("chat.slow")
}

// A held is a subscription held in its first delivery of chat.slow, so
// that its node falls behind while the test publishes.
type held struct {
	t         *testing.T
	b         *Broker
	rdb       *goredis.Client
	delivered chan *broker.Event
	release_  chan struct{}
	once      sync.Once
	first     uint64          // the event the subscription is held in
	published []*broker.Event // after first, in Seq order
}

func holdSubscription(t *testing.T, opts Options) *held {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	opts.URL, opts.Prefix = srv.URL(), "behind"
	opts.FanInWindow = time.Millisecond // so that the subscription falls behind it soon
	opts.Timeout = 5 * time.Second
	opts.Logger = slog.New(slog.DiscardHandler)
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	copts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	h := &held{t: t, b: b, rdb: goredis.NewClient(copts), delivered: make(chan *broker.Event, 10_000), release_: make(chan struct{})}
	t.Cleanup(func() { _ = h.rdb.Close() })
	holding := true
	if err := b.Subscribe(ctx, func(ev *broker.Event) {
		h.delivered <- ev
		if holding && ev.Topic == "chat.slow" {
			holding = false
			<-h.release_ // this node falls behind
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.let)
	h.first = h.publish("chat.slow").Seq
	h.published = nil
	if ev := h.next(); ev.Seq != h.first {
		t.Fatalf("first delivery %s %d, want seq %d", ev.Type, ev.Seq, h.first)
	}
	return h
}

func (h *held) publish(topic string) *broker.Event {
	h.t.Helper()
	ev := &broker.Event{Topic: topic, Type: "t", TypeURL: "type.googleapis.com/t"}
	if _, err := h.b.Publish(h.t.Context(), ev); err != nil {
		h.t.Fatal(err)
	}
	h.published = append(h.published, ev)
	return ev
}

// fallBehind publishes to topic until the fan-in stream no longer holds
// anything published while the subscription was held: it will have to
// catch up from the topic streams.
func (h *held) fallBehind(topic string) {
	h.t.Helper()
	last := h.published[len(h.published)-1].Seq
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.publish(topic)
		if len(h.published)%10 != 0 {
			continue
		}
		first, err := h.rdb.XRangeN(h.t.Context(), h.b.keys.all, "-", "+", 1).Result()
		if err != nil {
			h.t.Fatal(err)
		}
		if s, _ := strconv.ParseUint(fmt.Sprint(first[0].Values["s"]), 10, 64); s > last {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %d events the fan-in stream still holds seq %d", len(h.published), last)
		}
	}
}

// let releases the subscription, once.
func (h *held) let() { h.once.Do(func() { close(h.release_) }) }

func (h *held) next() *broker.Event {
	h.t.Helper()
	select {
	case ev := <-h.delivered:
		return ev
	case <-time.After(30 * time.Second):
		h.t.Fatal("no delivery within 30s")
		return nil
	}
}

// release lets the subscription go on, and returns what it delivers up to
// the last event published.
func (h *held) release() []*broker.Event {
	h.t.Helper()
	h.let()
	end := h.published[len(h.published)-1].Seq
	var rest []*broker.Event
	for len(rest) == 0 || rest[len(rest)-1].Seq < end || rest[len(rest)-1].Type == broker.LostType {
		rest = append(rest, h.next())
	}
	return rest
}

// caughtUp checks that the next event of topic comes with no marker.
func (h *held) caughtUp(topic string) {
	h.t.Helper()
	ev := h.publish(topic)
	if got := h.next(); got.Type == broker.LostType || got.Seq != ev.Seq {
		h.t.Fatalf("after catching up, the next event came as %s %q seq %d, want seq %d and no marker", got.Type, got.Topic, got.Seq, ev.Seq)
	}
}

// checkLosses checks what a subscription delivered after the event after,
// of the events published: each once, in order. A marker covers the events
// of its topic (an empty Topic: of every topic) after what was delivered
// before it and before the topic's next delivery after it; each event not
// delivered (lost) must be covered by a marker that comes before any later
// event, so that a stream on a pattern spanning topics resumes from before
// the loss. Every marker is followed by the event it names and covers a
// lost event: none stands where nothing is missing. It returns the number
// of markers per topic.
func checkLosses(t *testing.T, published []*broker.Event, after uint64, got []*broker.Event) map[string]int {
	t.Helper()
	topicOf := make(map[uint64]string, len(published))
	for _, ev := range published {
		topicOf[ev.Seq] = ev.Topic
	}
	delivered := make(map[uint64]bool, len(got))
	for _, ev := range got {
		if ev.Type != broker.LostType {
			delivered[ev.Seq] = true
		}
	}
	type cover struct {
		topic string
		upto  uint64 // the topic's next delivery
	}
	var covers []cover
	markers := make(map[string]int)
	prev := after
	for i, ev := range got {
		if ev.Type == broker.LostType {
			markers[ev.Topic]++
			j := i + 1
			for j < len(got) && got[j].Type == broker.LostType {
				j++ // markers for several topics name the same event
			}
			if j == len(got) || got[j].Seq != ev.Seq {
				t.Fatalf("the marker for %q at %d (seq %d) is not followed by the event it names", ev.Topic, i, ev.Seq)
			}
			c := cover{topic: ev.Topic, upto: ^uint64(0)}
			for _, n := range got[j:] {
				if ev.Topic != "" && n.Type != broker.LostType && n.Topic == ev.Topic {
					c.upto = n.Seq
					break
				}
			}
			covers = append(covers, c)
			lost := false
			for _, p := range published {
				if p.Seq > prev && p.Seq < c.upto && (c.topic == "" || p.Topic == c.topic) && !delivered[p.Seq] {
					lost = true
					break
				}
			}
			if !lost {
				t.Fatalf("a marker for %q at seq %d, where no event of it after %d was lost", ev.Topic, ev.Seq, prev)
			}
			continue
		}
		if ev.Seq <= prev {
			t.Fatalf("seq %d delivered after seq %d", ev.Seq, prev)
		}
		if _, ok := topicOf[ev.Seq]; !ok {
			t.Fatalf("seq %d delivered, which was not published", ev.Seq)
		}
		for s := prev + 1; s < ev.Seq; s++ {
			if !slices.ContainsFunc(covers, func(c cover) bool { return (c.topic == "" || c.topic == topicOf[s]) && s < c.upto }) {
				t.Fatalf("seq %d (%s) went missing with no %s marker before seq %d", s, topicOf[s], broker.LostType, ev.Seq)
			}
		}
		prev = ev.Seq
	}
	return markers
}
