package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// runHeader marks an event appended inside an atomic batch after another
// event of its topic (its value is its place in the batch, from 1): its
// predecessor on the topic is the message just before it in the stream, as
// a batch's messages take consecutive sequences. Its Herald-Prev names the
// batch's first predecessor only, the best an older node reading it can do.
const runHeader = "Herald-Run"

// A run is what one topic's goroutine appends in one go: an atomic batch
// of up to maxRunEvents events without idempotency keys (a batch refuses
// a duplicate message id as a whole), or one event.
const (
	maxRunEvents = 256
	// minRunEvents is the fewest events worth an atomic batch: the server
	// stages a batch and commits it apart, which costs it far more than
	// a few appends (measured on nats-server 2.15 with 100 topics and
	// runs of 2 or 3: 400-670 µs of its CPU per event against 14 µs), so
	// a shorter run goes one event at a time while more queue behind it.
	minRunEvents       = 8
	maxRunBytes        = 4 << 20
	maxBatchesInFlight = 16 // of the 50 a stream takes at once, shared by every node
)

// JetStream's error codes for atomic batches (nats-server errors.json).
const (
	errCodeAtomicDisabled        natsjs.ErrorCode = 10174
	errCodeAtomicTooManyInflight natsjs.ErrorCode = 10210
)

// pendingAppend is one event on its way to the stream.
type pendingAppend struct {
	ctx   context.Context // the caller's
	start time.Time       // when it was handed over; its time is up a call timeout later
	ts    *topicState
	ev    *broker.Event
	msg   *nats.Msg
	msgID string
	done  func(broker.PublishResult, error)
}

// Publish implements broker.Broker. It returns once the stream acknowledged
// the event (stored on a quorum of replicas).
func (b *Broker) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	return broker.PublishAndWait(ctx, b, ev) // answered within a few call timeouts
}

// PublishAsync implements broker.Pipeliner. Events queue per topic, and
// whoever holds a topic (its busy flag) appends its queue in order, a run
// at a time, so that topics go on in parallel and each topic's
// Herald-Prev chain stays exact: a single event of a topic whose last
// sequence is known is sent by the caller or by the goroutine that read
// the previous answer, and waits for its own in no goroutine
// (inflight.go); anything else goes in a goroutine of the topic's own.
func (b *Broker) PublishAsync(ctx context.Context, ev *broker.Event, done func(broker.PublishResult, error)) {
	if err := b.link.Ready(ctx); err != nil {
		done(broker.PublishResult{}, err)
		return
	}
	p := b.newPending(ctx, ev, done)
	b.mu.Lock()
	ts := b.topics[ev.Topic]
	if ts == nil {
		if len(b.topics) >= maxTopicStates {
			for name, t := range b.topics {
				if !t.busy {
					delete(b.topics, name)
				}
			}
		}
		ts = &topicState{}
		b.topics[ev.Topic] = ts
	}
	p.ts = ts
	ts.waiting = append(ts.waiting, p)
	start := !ts.busy
	ts.busy = true
	b.mu.Unlock()
	if start {
		b.advance(ts, false)
	}
}

// newPending makes ev's message for the stream.
func (b *Broker) newPending(ctx context.Context, ev *broker.Event, done func(broker.PublishResult, error)) *pendingAppend {
	ev.Time = time.Now()
	p := &pendingAppend{ctx: ctx, start: ev.Time, ev: ev, msg: nats.NewMsg(b.subjPrefix + ev.Topic), done: done}
	p.msg.Data = wire.Append(make([]byte, 0, wire.Size(ev)), ev)
	if ev.IdempotencyKey != "" {
		p.msgID = ev.Topic + " " + strconv.Quote(ev.IdempotencyKey)
		if ev.Fingerprint != "" {
			p.msg.Header.Set(fingerprintHeader, ev.Fingerprint)
		}
	}
	return p
}

// maxTopicStates bounds how many topics' last sequences a node remembers.
const maxTopicStates = 10000

// advance goes on with ts's queue, as its holder, until the queue is
// empty (ts is then no longer held) or an append is in flight that
// goes on with it once answered. A single event goes without waiting
// when it can (send); a batch, a topic whose last sequence must be read
// first and an event with an idempotency key wait for their answers, here
// when mayBlock, else in a goroutine of the topic's own.
func (b *Broker) advance(ts *topicState, mayBlock bool) {
	for {
		one, run := b.take(ts)
		switch {
		case one == nil && run == nil:
			return
		case one != nil && b.canSend(ts, one):
			if b.send(ts, one) {
				return
			}
			continue
		case !mayBlock:
			go func() {
				b.appendSlow(ts, one, run)
				b.advance(ts, true)
			}()
			return
		}
		b.appendSlow(ts, one, run)
	}
}

// take takes ts's next run off its queue: one event, or (run) up to
// maxRunEvents that can go as one atomic batch. With nothing queued it
// returns neither, and ts is no longer held.
func (b *Broker) take(ts *topicState) (one *pendingAppend, run []*pendingAppend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, size := 0, 0
	for n < len(ts.waiting) && n < maxRunEvents {
		p := ts.waiting[n]
		if n > 0 && (!b.atomic || p.msgID != "" || ts.waiting[0].msgID != "" || size+len(p.msg.Data) > maxRunBytes) {
			break
		}
		size += len(p.msg.Data)
		n++
	}
	switch {
	case n == 0:
		ts.waiting, ts.busy = nil, false
		return nil, nil
	case n < minRunEvents:
		one = ts.waiting[0]
		ts.waiting[0] = nil
		ts.waiting = ts.waiting[1:]
		return one, nil
	}
	run = make([]*pendingAppend, n)
	copy(run, ts.waiting)
	clear(ts.waiting[:n])
	ts.waiting = ts.waiting[n:]
	return nil, run
}

// appendSlow appends one event or a run, waiting for the stream's answer.
// A caller that gave up, or whose time ran out, before its event left has
// it answered with that error, and the run goes on without it.
func (b *Broker) appendSlow(ts *topicState, one *pendingAppend, run []*pendingAppend) {
	if one != nil {
		run = []*pendingAppend{one}
	}
	sent := run[:0]
	for _, p := range run {
		if err := b.link.Expired(p.ctx, p.start, "publish"); err != nil {
			p.done(broker.PublishResult{}, err)
			continue
		}
		sent = append(sent, p)
	}
	switch len(sent) {
	case 0:
	case 1:
		p := sent[0]
		ctx, cancel := b.link.BoundSince(p.ctx, p.start)
		p.done(b.appendOne(ctx, ts, p))
		cancel()
	default:
		b.appendRun(ts, sent)
	}
}

// prevOf returns what the next event of the topic chains to: its last
// sequence, or, for a topic with nothing retained (new, or everything it
// had aged out), just below the stream's first sequence, as its previous
// event, if any, lies below it: that errs on the side of a gap and never
// of silence.
func (b *Broker) prevOf(ctx context.Context, topic string, ts *topicState) (uint64, error) {
	if !ts.known {
		if err := b.loadLast(ctx, topic, ts); err != nil {
			return 0, err
		}
	}
	if ts.last != 0 {
		return ts.last, nil
	}
	info, err := b.stream.Info(ctx)
	if err != nil {
		return 0, b.link.Fail(ctx, "publish", err)
	}
	return max(info.State.FirstSeq, 1) - 1, nil
}

// retryAfterConflict handles an append the stream refused because the
// topic's last sequence was not the one expected (another node published
// to it): it learns the right one. It reports false for any other error.
func (b *Broker) retryAfterConflict(err error, ts *topicState) bool {
	var apiErr *natsjs.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence:
		// The error names the topic's last sequence; chain to it.
		ts.known = false
		if n, ok := strings.CutPrefix(apiErr.Description, "wrong last sequence: "); ok {
			if seq, perr := strconv.ParseUint(n, 10, 64); perr == nil {
				ts.last, ts.known = seq, true
			}
		}
		return true
	case errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant:
		ts.known = false // a replicated stream does not say which
		return true
	}
	return false
}

// conflictBackOff waits a little, with jitter, after several conflicts on a hot
// topic; it fails once ctx ends.
func (b *Broker) conflictBackOff(ctx context.Context, attempt int) error {
	if attempt < 3 {
		return nil
	}
	select {
	case <-ctx.Done():
		return b.link.Fail(ctx, "publish", ctx.Err())
	case <-time.After(time.Duration(attempt%8+1) * time.Millisecond):
		return nil
	}
}

// appendOne appends one event, chained to the topic's last sequence with
// Nats-Expected-Last-Subject-Sequence, and waits for the PubAck.
func (b *Broker) appendOne(ctx context.Context, ts *topicState, p *pendingAppend) (broker.PublishResult, error) {
	ev, msg := p.ev, p.msg
	for attempt := 0; ; attempt++ {
		prev, err := b.prevOf(ctx, ev.Topic, ts)
		if err != nil {
			return broker.PublishResult{}, err
		}
		h := msg.Header
		h.Set(prevHeader, strconv.FormatUint(prev, 10))
		h.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(ts.last, 10))
		if p.msgID != "" {
			h.Set(natsjs.MsgIDHeader, p.msgID)
		}
		ack, err := b.request(ctx, msg)
		if err == nil {
			b.link.Confirm()
			if ack.duplicate {
				// The PubAck names only the original's sequence.
				fp, err := b.fingerprintOf(ctx, ev.Topic, ev.IdempotencyKey, ack.seq)
				if err != nil {
					return broker.PublishResult{}, err
				}
				return broker.PublishResult{Seq: ack.seq, Duplicate: true, Fingerprint: fp}, nil
			}
			ts.last = ack.seq
			ev.Seq = ack.seq
			b.noteAck(ack.seq)
			return broker.PublishResult{Seq: ack.seq}, nil
		}
		switch {
		case b.retryAfterConflict(err, ts):
		default:
			return broker.PublishResult{}, b.appendError(ctx, msg, err)
		}
		if err := b.conflictBackOff(ctx, attempt); err != nil {
			return broker.PublishResult{}, err
		}
	}
}

// appendError is the error to answer an append the stream refused, or
// that got no answer, with.
func (b *Broker) appendError(ctx context.Context, msg *nats.Msg, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %d bytes with headers are more than the NATS server's max_payload (%d)",
			broker.ErrEventTooLarge, len(msg.Data), b.nc.MaxPayload())
	}
	return b.link.FailSent(ctx, "publish", err)
}

// appendRun appends several events of one topic, none with an
// idempotency key, as one atomic batch: the first chained to the topic's
// last sequence with Nats-Expected-Last-Subject-Sequence, the others
// following it at consecutive sequences (Herald-Run). The stream takes all
// or none, so a conflict with another node retries the whole run and a
// failure fails it whole: order and the chain hold as for single appends,
// at one round trip for the run.
func (b *Broker) appendRun(ts *topicState, run []*pendingAppend) {
	ctx, cancel := b.link.Bound(context.Background())
	defer cancel()
	if b.takeFast(ts, run) {
		run = b.appendFast(ctx, ts, run)
		switch len(run) {
		case 0:
			return
		case 1:
			run[0].done(b.appendOne(ctx, ts, run[0]))
			return
		}
	}
	fail := func(err error) {
		for _, p := range run {
			p.done(broker.PublishResult{}, err)
		}
	}
	select {
	case b.batchSlots <- struct{}{}:
		defer func() { <-b.batchSlots }()
	case <-ctx.Done():
		fail(b.link.Fail(ctx, "publish", ctx.Err()))
		return
	}
	topic := run[0].ev.Topic
	for attempt := 0; ; attempt++ {
		prev, err := b.prevOf(ctx, topic, ts)
		if err != nil {
			fail(err)
			return
		}
		ack, err := b.sendBatch(ctx, ts.last, prev, run)
		if err == nil {
			b.link.Confirm()
			first := ack.seq - uint64(len(run)) + 1
			for i, p := range run {
				p.ev.Seq = first + uint64(i)
				p.done(broker.PublishResult{Seq: p.ev.Seq}, nil)
			}
			ts.last = ack.seq
			b.noteAck(ack.seq)
			return
		}
		var apiErr *natsjs.APIError
		switch {
		case b.retryAfterConflict(err, ts):
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeAtomicTooManyInflight:
			// Other nodes' batches fill the stream's slots: wait for one.
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeAtomicDisabled:
			// The stream's setting changed under us: append one by one.
			b.mu.Lock()
			b.atomic = false
			b.mu.Unlock()
			for _, p := range run {
				for _, k := range batchHeaders {
					p.msg.Header.Del(k)
				}
				p.done(b.appendOne(ctx, ts, p))
			}
			return
		case errors.Is(err, nats.ErrMaxPayload):
			fail(fmt.Errorf("%w: an event with headers is more than the NATS server's max_payload (%d)", broker.ErrEventTooLarge, b.nc.MaxPayload()))
			return
		default:
			fail(b.link.Fail(ctx, "publish", err))
			return
		}
		if err := b.conflictBackOff(ctx, attempt+3); err != nil {
			fail(err)
			return
		}
	}
}

// sendBatch sends run as one atomic batch and waits for the stream's
// answer to its commit, which names the last message's sequence.
func (b *Broker) sendBatch(ctx context.Context, expectLast, prev uint64, run []*pendingAppend) (ack, error) {
	id := nuid.Next()
	prevText := strconv.FormatUint(prev, 10)
	for i, p := range run {
		h := p.msg.Header
		h.Set(prevHeader, prevText)
		h.Set("Nats-Batch-Id", id)
		h.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			h.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(expectLast, 10))
			h.Del(runHeader)
		} else {
			h.Del(natsjs.ExpectedLastSubjSeqHeader)
			h.Set(runHeader, strconv.Itoa(i))
		}
		if i < len(run)-1 {
			h.Del("Nats-Batch-Commit")
			if err := b.nc.PublishMsg(p.msg); err != nil {
				return ack{}, err
			}
		}
	}
	last := run[len(run)-1].msg
	last.Header.Set("Nats-Batch-Commit", "1")
	reply, err := b.nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return ack{}, err
	}
	a, err := parseAck(reply.Data)
	if err == nil && a.seq < uint64(len(run)) {
		return ack{}, natsjs.ErrInvalidJetStreamResponse
	}
	return a, err
}

// batchHeaders are the headers sendBatch sets that a single append must
// not carry.
var batchHeaders = [...]string{"Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit", runHeader}
