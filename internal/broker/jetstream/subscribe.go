package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
// last sequence delivered + 1.
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
	cons, err := b.stream.OrderedConsumer(cctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{b.subjPrefix + ">"},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return b.link.Fail(cctx, "subscribe", err)
	}
	it, err := cons.Messages(natsjs.PullMaxMessages(512), natsjs.PullExpiry(10*time.Second), natsjs.PullHeartbeat(2*time.Second))
	if err != nil {
		return b.link.Fail(cctx, "subscribe", err)
	}
	return b.link.Subscribe(ctx, it.Stop, func(ctx context.Context, s *remote.Subscription) {
		b.run(ctx, s, it, info.State.LastSeq, deliver)
	})
}

// run delivers from the consumer until the subscription halts.
func (b *Broker) run(ctx context.Context, s *remote.Subscription, it natsjs.MessagesContext, last uint64, deliver func(*broker.Event)) {
	for !s.Stopped() {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			if s.Stopped() || b.link.Closed() || errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return
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
		last = seq
		ev, _, err := b.decode(msg.Subject(), msg.Headers().Get(prevHeader), msg.Data())
		if err != nil {
			b.log.Warn("skipping a malformed event", "seq", seq, "subject", msg.Subject(), "err", err)
			continue
		}
		ev.Seq = seq
		if s.Stopped() {
			return
		}
		b.link.Confirm()
		deliver(ev)
	}
}

// decode turns a stream message into an event and its Herald-Prev.
func (b *Broker) decode(subject, prev string, data []byte) (*broker.Event, uint64, error) {
	topic, ok := cutPrefix(subject, b.subjPrefix)
	if !ok {
		return nil, 0, fmt.Errorf("subject %q is not under %s", subject, b.subjPrefix)
	}
	ev, err := wire.Decode(data)
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
