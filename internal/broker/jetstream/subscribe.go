package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// A subscription is one ordered consumer and the goroutine that delivers
// from it.
type subscription struct {
	it      natsjs.MessagesContext
	cancel  context.CancelFunc // ends Next
	stopped atomic.Bool
	once    sync.Once
	release func() bool // releases the context.AfterFunc
}

// halt stops the subscription; its goroutine ends soon after, without
// another deliver call.
func (s *subscription) halt() {
	s.once.Do(func() {
		s.stopped.Store(true)
		s.cancel()
		s.it.Stop()
		if s.release != nil {
			s.release()
		}
	})
}

// Subscribe implements broker.Broker: one ordered consumer over every
// topic, starting after the stream's last sequence now, so every event
// accepted after Subscribe returns is delivered. nats.go recreates the
// consumer after a disconnect, a server restart or a lost consumer, from the
// last sequence delivered + 1.
func (b *Broker) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := b.bounded(ctx)
	defer cancel()
	info, err := b.stream.Info(cctx)
	if err != nil {
		return b.fail(cctx, "subscribe", err)
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
		return b.fail(cctx, "subscribe", err)
	}
	it, err := cons.Messages(natsjs.PullMaxMessages(512), natsjs.PullExpiry(10*time.Second), natsjs.PullHeartbeat(2*time.Second))
	if err != nil {
		return b.fail(cctx, "subscribe", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	s := &subscription{it: it, cancel: stopRun}

	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		s.halt()
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	s.release = context.AfterFunc(ctx, s.halt)
	go b.run(runCtx, s, info.State.LastSeq, deliver)
	return nil
}

func (b *Broker) run(ctx context.Context, s *subscription, last uint64, deliver func(*broker.Event)) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.halt()
	}()
	for !s.stopped.Load() {
		msg, err := s.it.Next(natsjs.NextContext(ctx))
		if err != nil {
			if s.stopped.Load() || b.closed.Load() || errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return
			}
			// The ordered consumer recovers by itself from what it can;
			// have the monitor check the stream, and go on.
			b.kick()
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
		if s.stopped.Load() {
			return
		}
		b.confirm()
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
