package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// A run is bounded in events and bytes: one script call carries it, and
// Redis runs nothing else meanwhile.
const (
	maxRunEvents = 256
	maxRunBytes  = 1 << 20
)

// appendQueue holds the publishes waiting for the next run, in the order
// they were handed over. One goroutine at a time (busy) sends runs.
type appendQueue struct {
	mu      sync.Mutex
	waiting []*pendingAppend
	busy    bool
}

// pendingAppend is one event on its way to Redis.
type pendingAppend struct {
	ctx   context.Context // the caller's
	start time.Time       // when it was handed over; its time is up a call timeout later
	ev    *broker.Event
	data  []byte
	done  func(broker.PublishResult, error)
}

// Publish implements broker.Broker. It returns once Redis executed the
// append. A duplicate reports the Fingerprint kept in its idempotency key,
// "" for a key written before fingerprints existed (by an older node
// during a rolling upgrade). The other way round, an older node that reads
// a key written with a fingerprint fails that publish with ErrUnavailable
// until the key expires: its script reads the value as a bare sequence.
func (b *Broker) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	return broker.PublishAndWait(ctx, b, ev) // answered within a few call timeouts
}

// PublishAsync implements broker.Pipeliner: ev joins the next run.
func (b *Broker) PublishAsync(ctx context.Context, ev *broker.Event, done func(broker.PublishResult, error)) {
	if err := b.link.Ready(ctx); err != nil {
		done(broker.PublishResult{}, err)
		return
	}
	ev.Time = time.Time{}
	p := &pendingAppend{ctx: ctx, start: time.Now(), ev: ev, data: wire.Append(make([]byte, 0, wire.Size(ev)), ev), done: done}
	q := &b.queue
	q.mu.Lock()
	q.waiting = append(q.waiting, p)
	start := !q.busy
	q.busy = true
	q.mu.Unlock()
	if start {
		go b.sendRuns()
	}
}

// sendRuns sends runs until the queue is empty.
func (b *Broker) sendRuns() {
	q := &b.queue
	for {
		q.mu.Lock()
		n, size := 0, 0
		for n < len(q.waiting) && n < maxRunEvents && (n == 0 || size+len(q.waiting[n].data) <= maxRunBytes) {
			size += len(q.waiting[n].data)
			n++
		}
		if n == 0 {
			q.waiting, q.busy = nil, false
			q.mu.Unlock()
			return
		}
		run := make([]*pendingAppend, n)
		copy(run, q.waiting)
		q.waiting = q.waiting[n:]
		q.mu.Unlock()
		b.sendRun(run)
	}
}

// sendRun appends run with one script call and answers each of its
// events. An event whose caller gave up, or whose time ran out, before
// the run left is answered with that error and left out.
func (b *Broker) sendRun(run []*pendingAppend) {
	sent := run[:0]
	for _, p := range run {
		if err := b.link.Expired(p.ctx, p.start, "publish"); err != nil {
			p.done(broker.PublishResult{}, err)
			continue
		}
		sent = append(sent, p)
	}
	if len(sent) == 0 {
		return
	}
	keys := make([]string, 0, 6+2*len(sent))
	keys = append(keys, b.keys.epoch, b.keys.seq, b.keys.all, b.keys.topics, b.keys.touched, b.keys.cut)
	args := make([]any, 0, 5+4*len(sent))
	args = append(args, b.epoch, b.opts.MaxEvents, b.opts.MaxAge.Microseconds(), b.opts.IdempotencyWindow.Milliseconds(), b.opts.FanInWindow.Milliseconds())
	for _, p := range sent {
		ev := p.ev
		keyed, idem, fingerprint := "0", b.keys.idemPrefix+ev.Topic, ""
		if ev.IdempotencyKey != "" {
			keyed, idem, fingerprint = "1", idem+"\x00"+ev.IdempotencyKey, ev.Fingerprint
		}
		keys = append(keys, b.keys.topic(ev.Topic), idem)
		args = append(args, ev.Topic, p.data, keyed, fingerprint)
	}
	// The run is bounded by the call timeout from when it leaves, not by
	// its first caller's: an answer is what every event waits for.
	ctx, cancel := b.link.Bound(context.Background())
	defer cancel()
	replies, err := publishScript.Run(ctx, b.rdb, keys, args...).Slice()
	if err == nil && len(replies) != len(sent) {
		err = fmt.Errorf("publish script answered %d replies for %d events", len(replies), len(sent))
	}
	if err != nil {
		err = b.link.Fail(ctx, "publish", err)
		for _, p := range sent {
			p.done(broker.PublishResult{}, err)
		}
		return
	}
	b.link.Confirm()
	for i, p := range sent {
		p.done(b.publishResult(p.ev, replies[i]))
	}
}

// publishResult decodes one event's reply of publishScript.
func (b *Broker) publishResult(ev *broker.Event, reply any) (broker.PublishResult, error) {
	res, _ := reply.([]any)
	status, seq, us, text, ok := publishReply(res)
	switch {
	case !ok:
		return broker.PublishResult{}, fmt.Errorf("%w: redis: publish script answered %v", broker.ErrUnavailable, reply)
	case status == 2:
		return broker.PublishResult{}, fmt.Errorf("%w: redis: %s", broker.ErrUnavailable, text)
	case status == 1:
		return broker.PublishResult{Seq: seq, Duplicate: true, Fingerprint: text}, nil
	}
	ev.Seq = seq
	ev.Time = time.UnixMicro(us)
	return broker.PublishResult{Seq: seq}, nil
}

// publishReply decodes one event's reply of publishScript: its status (0
// new, 1 duplicate, 2 refused), sequence, time, and fingerprint or message.
func publishReply(res []any) (status int64, seq uint64, us int64, text string, ok bool) {
	if len(res) < 3 || len(res) > 4 {
		return 0, 0, 0, "", false
	}
	var n [3]int64
	for i := range n {
		if n[i], ok = res[i].(int64); !ok {
			return 0, 0, 0, "", false
		}
	}
	if len(res) == 4 {
		if text, ok = res[3].(string); !ok {
			return 0, 0, 0, "", false
		}
	}
	return n[0], uint64(n[1]), n[2], text, true
}
