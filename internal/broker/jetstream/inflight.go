package jetstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
)

// Single appends wait for their PubAck in no goroutine. A request through
// nats.go makes a channel, an inbox and a map entry per call, parks the
// caller's goroutine until the subscription's goroutine hands the answer
// over, and its bounded context adds a timer: over 100 topics at 20,000
// appends a second that was most of what appending cost a node besides the
// write itself. Instead, the holder of a topic sends its next event with a
// numbered reply subject on the broker's own subscription; the
// subscription's goroutine reads the PubAck, answers the event and sends
// the topic's next one (onAck), and a sweeper fails what went unanswered
// for a call timeout (expire). Whoever takes an append out of flight (the
// answer, the sweeper or Close) holds its topic from then on.

// inflight holds the appends sent and not yet answered.
type inflight struct {
	prefix string // of the reply subjects: "<inbox>."
	next   atomic.Uint64

	mu      sync.Mutex
	closed  bool
	waiting map[uint64]*pendingAppend
}

// add puts p in flight and returns its reply subject; false once closed.
func (f *inflight) add(p *pendingAppend) (id uint64, reply string, ok bool) {
	id = f.next.Add(1)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, "", false
	}
	f.waiting[id] = p
	f.mu.Unlock()
	var sb strings.Builder
	sb.Grow(len(f.prefix) + 13)
	sb.WriteString(f.prefix)
	var digits [13]byte
	sb.Write(strconv.AppendUint(digits[:0], id, 36))
	return id, sb.String(), true
}

// remove takes the append with id out of flight, or returns nil when
// another already did.
func (f *inflight) remove(id uint64) *pendingAppend {
	f.mu.Lock()
	p := f.waiting[id]
	delete(f.waiting, id)
	f.mu.Unlock()
	return p
}

// empty reports whether no append is in flight.
func (f *inflight) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiting) == 0
}

// expired takes out of flight the appends for which late reports true.
func (f *inflight) expired(late func(*pendingAppend) bool) []*pendingAppend {
	var out []*pendingAppend
	f.mu.Lock()
	for id, p := range f.waiting {
		if late(p) {
			out = append(out, p)
			delete(f.waiting, id)
		}
	}
	f.mu.Unlock()
	return out
}

// close takes every append out of flight; add fails from then on.
func (f *inflight) close() []*pendingAppend {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	out := make([]*pendingAppend, 0, len(f.waiting))
	for _, p := range f.waiting {
		out = append(out, p)
	}
	clear(f.waiting)
	return out
}

// startInflight subscribes to the appends' answers and starts the sweeper.
func (b *Broker) startInflight() error {
	inbox := b.nc.NewInbox()
	b.inflight = inflight{prefix: inbox + ".", waiting: make(map[uint64]*pendingAppend)}
	if _, err := b.nc.Subscribe(inbox+".*", b.onAck); err != nil {
		return err
	}
	timeout := b.link.Timeout()
	b.link.Go(func(stop <-chan struct{}) {
		t := time.NewTicker(sweepEvery(timeout))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				b.expire(now)
			}
		}
	})
	return nil
}

// sweepEvery is how often the sweeper looks for appends in flight that
// are due an answer: an eighth of the call timeout, and at least ten times
// a second, so that a caller that gave up (a gRPC deadline, a client gone)
// is answered within 100 ms, as it was when it waited on a request.
func sweepEvery(timeout time.Duration) time.Duration {
	return min(max(timeout/8, 10*time.Millisecond), 100*time.Millisecond)
}

// canSend reports whether p, the next event of ts, can go without its
// sender waiting (send): it has no idempotency key (a duplicate's answer
// needs another request), its topic's last sequence is known (else it is
// read first), and its time is not up.
func (b *Broker) canSend(ts *topicState, p *pendingAppend) bool {
	return ts.known && ts.last != 0 && p.msgID == "" && !b.link.Late(p.ctx, p.start, time.Now())
}

// send appends p, chained to ts's last sequence, without waiting for the
// stream's answer, which goes on with the topic (onAck). It reports false
// when p could not be sent and was answered; the caller still holds ts.
func (b *Broker) send(ts *topicState, p *pendingAppend) bool {
	last := strconv.FormatUint(ts.last, 10)
	p.msg.Header.Set(prevHeader, last)
	p.msg.Header.Set(natsjs.ExpectedLastSubjSeqHeader, last)
	id, reply, ok := b.inflight.add(p)
	if !ok {
		p.done(broker.PublishResult{}, b.link.Usable())
		return false
	}
	p.msg.Reply = reply
	err := b.nc.PublishMsg(p.msg)
	if err == nil {
		return true
	}
	if b.inflight.remove(id) == nil {
		return true // Close or the sweeper took it, and holds ts now
	}
	ctx, cancel := b.link.BoundSince(p.ctx, p.start)
	defer cancel()
	p.done(broker.PublishResult{}, b.appendError(ctx, p.msg, err))
	return false
}

// onAck reads the stream's answer to an append that send sent. An
// acceptance answers the event, and the topic goes on from here; anything
// else (a conflict with another node's append, no stream to answer, an
// error) is settled as a waiting append would be, in a goroutine.
func (b *Broker) onAck(m *nats.Msg) {
	digits, ok := strings.CutPrefix(m.Subject, b.inflight.prefix)
	if !ok {
		return
	}
	id, err := strconv.ParseUint(digits, 36, 64)
	if err != nil {
		return
	}
	p := b.inflight.remove(id)
	if p == nil {
		return // answered already: its time ran out, or Close came
	}
	ts := p.ts
	a, err := ackOf(m)
	if err == nil && !a.duplicate {
		b.link.Confirm()
		ts.last, p.ev.Seq = a.seq, a.seq
		b.noteAck(a.seq)
		p.done(broker.PublishResult{Seq: a.seq}, nil)
		b.advance(ts, false)
		return
	}
	go func() {
		p.msg.Reply = ""
		ctx, cancel := b.link.BoundSince(p.ctx, p.start)
		switch {
		case err == nil:
			// A duplicate, though p has no message id: the stream holds
			// something else than what this node thinks.
			p.done(broker.PublishResult{}, b.appendError(ctx, p.msg, natsjs.ErrInvalidJetStreamResponse))
		case b.retryAfterConflict(err, ts), errors.Is(err, nats.ErrNoResponders):
			p.done(b.appendOne(ctx, ts, p))
		default:
			p.done(broker.PublishResult{}, b.appendError(ctx, p.msg, err))
		}
		cancel()
		b.advance(ts, true)
	}()
}

// expire fails the appends in flight whose time ran out, or whose callers
// gave up, before an answer came: with ErrUnavailable, as the stream may
// yet store them (Link.FailSent), so their topics' last sequences are read
// again before their next appends.
func (b *Broker) expire(now time.Time) {
	for _, p := range b.inflight.expired(func(p *pendingAppend) bool { return b.link.Late(p.ctx, p.start, now) }) {
		ctx, cancel := b.link.BoundSince(p.ctx, p.start)
		p.done(broker.PublishResult{}, b.link.FailSent(ctx, "publish", context.DeadlineExceeded))
		cancel()
		p.ts.known = false
		b.advance(p.ts, false)
	}
}

// closeInflight answers the appends in flight with ErrClosed, once the
// connection is closed, and then the events queued behind them.
func (b *Broker) closeInflight() {
	for _, p := range b.inflight.close() {
		p.done(broker.PublishResult{}, b.link.Usable())
		b.advance(p.ts, false)
	}
}
