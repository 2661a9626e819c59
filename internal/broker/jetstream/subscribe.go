package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/remote"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// Subscribe implements broker.Broker: one ordered consumer over every
// topic, starting after the stream's last sequence now, so every event
// accepted after Subscribe returns is delivered. nats.go recreates the
// consumer after a disconnect, a server restart or a lost consumer, from the
// last sequence delivered + 1; when it gives up (a reset that failed, as
// when the stream's leader is lost while it resets), run follows the
// stream again from there itself.
func (b *Broker) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	cctx, cancel, err := b.link.Begin(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	info, err := b.stream.Info(cctx)
	if err != nil {
		return b.link.Fail(cctx, "subscribe", err)
	}
	if err := b.checkCreated(info.Created); err != nil {
		return err
	}
	it, err := b.follow(cctx, info.State.LastSeq+1)
	if err != nil {
		return b.link.Fail(cctx, "subscribe", err)
	}
	f := &follower{it: it}
	if onFollow != nil {
		onFollow(f)
	}
	return b.link.Subscribe(ctx, f.stop, func(ctx context.Context, s *remote.Subscription) {
		b.run(ctx, s, f, info.State.LastSeq, deliver)
	})
}

// follow opens an ordered consumer over every topic from stream sequence
// start on.
func (b *Broker) follow(ctx context.Context, start uint64) (natsjs.MessagesContext, error) {
	cons, err := b.stream.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{b.subjPrefix + ">"},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return nil, err
	}
	return cons.Messages(natsjs.PullMaxMessages(512), natsjs.PullExpiry(10*time.Second), natsjs.PullHeartbeat(2*time.Second))
}

// A follower holds a subscription's current message iterator, which run
// replaces when nats.go closes it underneath, and stop closes for good.
type follower struct {
	mu      sync.Mutex
	it      natsjs.MessagesContext
	stopped bool
}

func (f *follower) current() natsjs.MessagesContext {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.it
}

// replace makes it the current iterator, unless the subscription was
// stopped meanwhile: then it stops it and reports false.
func (f *follower) replace(it natsjs.MessagesContext) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		it.Stop()
		return false
	}
	f.it = it
	return true
}

func (f *follower) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	f.it.Stop()
}

// onFollow, when set (by tests), is told of every new subscription's
// follower.
var onFollow func(*follower)

// run delivers from the consumer until the subscription halts.
func (b *Broker) run(ctx context.Context, s *remote.Subscription, f *follower, last uint64, deliver func(*broker.Event)) {
	chain := newTopicChain(last)
	spanning := false // events went before they could be delivered
	for !s.Stopped() {
		msg, err := f.current().Next(natsjs.NextContext(ctx))
		if err != nil {
			if s.Stopped() || b.link.Closed() {
				return
			}
			if errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				// Not closed by this subscription: nats.go gave up on the
				// consumer. Returning would leave this node deaf with every
				// stream open; follow the stream again after the last event
				// delivered, so that nothing is skipped.
				if !b.refollow(ctx, s, f, last, err) {
					return
				}
				continue
			}
			// The ordered consumer recovers by itself from what it can;
			// have the monitor check the stream, and go on.
			b.link.Kick()
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			b.log.Warn("skipping a message without JetStream metadata", "subject", msg.Subject(), "err", err)
			continue
		}
		seq := meta.Sequence.Stream
		if seq <= last {
			continue // delivered already
		}
		// Every message of the stream is an event this consumer reads, so
		// a sequence skipped is an event retention removed before this
		// node read it (it fell further behind than the stream keeps).
		// Its topic went with it: the streams that span topics must hear
		// of the loss before anything that came after it, and the topic's
		// own streams hear of it from the chain, at its next event.
		if seq > last+1 {
			spanning = true
			chain.skipped(seq)
		}
		last = seq
		ev, prev, err := b.decode(msg.Subject(), msg.Headers().Get(prevHeader), msg.Data())
		if err != nil {
			b.log.Warn("skipping a malformed event", "seq", seq, "subject", msg.Subject(), "err", err)
			continue
		}
		ev.Seq = seq
		if msg.Headers().Get(runHeader) != "" {
			prev = seq - 1 // inside an atomic batch (pipeline.go)
		}
		if s.Stopped() {
			return
		}
		b.link.Confirm()
		if spanning {
			spanning = false
			deliver(&broker.Event{Type: broker.LostSpanningType, Seq: seq})
		}
		if chain.lost(ev.Topic, prev, seq) {
			deliver(&broker.Event{Topic: ev.Topic, Type: broker.LostType, Seq: seq})
		}
		deliver(ev)
	}
}

// refollow replaces f's iterator, which nats.go closed, with one from
// stream sequence last+1, trying until it succeeds or the subscription
// halts (false).
func (b *Broker) refollow(ctx context.Context, s *remote.Subscription, f *follower, last uint64, why error) bool {
	b.log.Warn("the stream's consumer ended; following the stream again", "after", last, "err", why)
	for attempt := 0; !s.Stopped(); attempt++ {
		b.link.Kick()
		actx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
		it, err := b.follow(actx, last+1)
		cancel()
		if err == nil {
			return f.replace(it)
		}
		b.log.Debug("following the stream again failed", "after", last, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*250*time.Millisecond, 2*time.Second)):
		}
	}
	return false
}

// A topicChain tells which topic lost the events a subscription found
// gone. Each event names its topic's previous one (Herald-Prev, or the
// message before it inside a batch): when that is after the last event of
// the topic delivered here, the ones between are lost to this node. A
// topic it has not delivered an event of since it began watching (floor)
// lost one if its event's previous one lies after floor and before the
// latest hole: had it come after floor, and not in a hole, it would have
// been delivered here.
type topicChain struct {
	last  map[string]uint64 // topic → the last event of it delivered
	floor uint64            // every event after it was read but for holes
	hole  uint64            // the event read right after the latest hole
}

func newTopicChain(floor uint64) *topicChain {
	return &topicChain{last: make(map[string]uint64), floor: floor}
}

// maxChainTopics bounds the topics a subscription remembers; when full, it
// forgets them all and watches afresh from the event in hand, which only
// misses a loss already behind it.
const maxChainTopics = 100000

// skipped records that the events before seq, back to the last one read,
// were gone.
func (c *topicChain) skipped(seq uint64) { c.hole = seq }

// lost records the delivery of seq on topic, whose previous event is prev,
// and reports whether events of the topic before seq were lost.
func (c *topicChain) lost(topic string, prev, seq uint64) bool {
	last, known := c.last[topic]
	if !known {
		if len(c.last) >= maxChainTopics {
			clear(c.last)
			c.floor, c.hole = seq-1, 0
		}
		c.last[topic] = seq
		return prev > c.floor && prev < c.hole
	}
	c.last[topic] = seq
	return prev > last
}

// decode turns a stream message into an event and its Herald-Prev. The
// event's Payload aliases data, which nats.go allocated for the message
// alone (it copies what it reads for each message).
func (b *Broker) decode(subject, prev string, data []byte) (*broker.Event, uint64, error) {
	topic, ok := cutPrefix(subject, b.subjPrefix)
	if !ok {
		return nil, 0, fmt.Errorf("subject %q is not under %s", subject, b.subjPrefix)
	}
	ev, err := wire.DecodeOwned(data)
	if err != nil {
		return nil, 0, err
	}
	ev.Topic = topic
	p, err := strconv.ParseUint(prev, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("header %s is %q, not a sequence", prevHeader, prev)
	}
	return ev, p, nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) <= len(prefix) || s[:len(prefix)] != prefix {
		return "", false
	}
	return s[len(prefix):], true
}
