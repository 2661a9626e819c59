package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// A run is bounded in events and bytes: one script call carries it, and
// Redis runs nothing else meanwhile.
const (
	maxRunEvents = 256
	maxRunBytes  = 1 << 20
)

// ageCheckEvery: the publish script looks at a topic's oldest event for
// retention by age when the topic takes an event whose sequence is a
// multiple of it (or when it trims the topic by count anyway).
const ageCheckEvery = 16

// appendQueue holds the publishes waiting for the next run, in the order
// they were handed over. One goroutine at a time (busy) sends runs.
type appendQueue struct {
	mu      sync.Mutex
	waiting []*pendingAppend
	busy    bool
	// topics holds the script arguments of the topics of recent runs,
	// made once: only the goroutine sending runs touches it.
	topics map[string]*topicArgs
	runs   uint64 // runs made, to tell whether a topic is in this one
}

// topicArgs are a topic's key and name as the script call takes them, and
// its number in the latest run that named it.
type topicArgs struct {
	key, name any
	run       uint64
	number    int
}

// maxTopicArgs bounds appendQueue.topics; past it, it starts afresh.
const maxTopicArgs = 4096

// topicNumbers are the numbers a run gives its topics, as the script
// call takes them: "1" to "256", made once.
var topicNumbers = func() (n [maxRunEvents + 1]any) {
	for i := 1; i <= maxRunEvents; i++ {
		n[i] = strconv.Itoa(i)
	}
	return n
}()

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
	cmd := b.publishCall(sent)
	// The run is bounded by the call timeout from when it leaves, not by
	// its first caller's: an answer is what every event waits for.
	ctx, cancel := b.link.Bound(context.Background())
	defer cancel()
	res := b.rdb.Do(ctx, cmd...)
	if goredis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		// Redis lost its scripts (a restart): send this one whole.
		cmd[0], cmd[1] = "eval", publishSource
		res = b.rdb.Do(ctx, cmd...)
	}
	replies, err := res.Slice()
	var us int64
	if err == nil {
		us, err = runTime(replies, len(sent))
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
		p.done(b.publishResult(p.ev, us, replies[1+i]))
	}
}

// publishCall returns the EVALSHA of publishScript for the run sent. Its
// keys and arguments are in one list, as the call sends them. A run names
// each of its topics once, with its key and name made once
// (appendQueue.topics), and an event without an idempotency key is its
// topic's number and its bytes: the call makes no string and boxes no
// value per such event but its bytes.
func (b *Broker) publishCall(sent []*pendingAppend) []any {
	const head = 6
	q := &b.queue
	if q.topics == nil || len(q.topics) > maxTopicArgs {
		q.topics = make(map[string]*topicArgs)
	}
	q.runs++
	// First each event's topic, numbered in the order the run names them.
	topics := make([]*topicArgs, len(sent))
	named, keyed := 0, 0
	for i, p := range sent {
		ev := p.ev
		t := q.topics[ev.Topic]
		if t == nil {
			t = &topicArgs{key: b.keys.topic(ev.Topic), name: ev.Topic}
			q.topics[ev.Topic] = t
		}
		if t.run != q.runs {
			named++
			t.run, t.number = q.runs, named
		}
		topics[i] = t
		if ev.IdempotencyKey != "" {
			keyed++
		}
	}
	nkeys := head + named + keyed
	cmd := make([]any, 3+nkeys+head+1+named+2*len(sent))
	cmd[0], cmd[1], cmd[2] = "evalsha", publishScript.Hash(), nkeys
	keys := cmd[3 : 3+nkeys]
	args := cmd[3+nkeys:]
	keys[0], keys[1], keys[2], keys[3], keys[4], keys[5] = b.keys.epoch, b.keys.seq, b.keys.all, b.keys.topics, b.keys.touched, b.keys.cut
	args[0], args[1], args[2], args[3], args[4], args[5] = b.epoch, b.opts.MaxEvents, b.opts.MaxAge.Microseconds(), b.opts.IdempotencyWindow.Milliseconds(), b.opts.FanInWindow.Milliseconds(), ageCheckEvery
	args[6] = named
	idem, events := keys[head+named:], args[head+1+named:]
	for i, p := range sent {
		t := topics[i]
		keys[head+t.number-1], args[head+t.number] = t.key, t.name // again for each of its events
		ev := p.ev
		if ev.IdempotencyKey == "" {
			events[2*i] = topicNumbers[t.number]
		} else {
			events[2*i] = strconv.Itoa(t.number) + "+" + ev.Fingerprint
			idem[0], idem = b.keys.idemPrefix+ev.Topic+"\x00"+ev.IdempotencyKey, idem[1:]
		}
		events[2*i+1] = p.data
	}
	return cmd
}

// runTime checks the length of publishScript's answer to a run of n
// events and returns the run's time (µs), its first value.
func runTime(replies []any, n int) (int64, error) {
	if len(replies) != 1+n {
		return 0, fmt.Errorf("publish script answered %d values for %d events", len(replies), n)
	}
	us, ok := replies[0].(int64)
	if !ok {
		return 0, fmt.Errorf("publish script answered %v as the time", replies[0])
	}
	return us, nil
}

// publishResult decodes one event's value of publishScript's answer: its
// sequence if it is new; {sequence, fingerprint} if it is a duplicate;
// {0, message} if it was refused.
func (b *Broker) publishResult(ev *broker.Event, us int64, reply any) (broker.PublishResult, error) {
	if seq, ok := reply.(int64); ok && seq > 0 {
		ev.Seq = uint64(seq)
		ev.Time = time.UnixMicro(us)
		return broker.PublishResult{Seq: uint64(seq)}, nil
	}
	pair, _ := reply.([]any)
	if len(pair) == 2 {
		seq, ok1 := pair[0].(int64)
		text, ok2 := pair[1].(string)
		switch {
		case ok1 && ok2 && seq > 0:
			return broker.PublishResult{Seq: uint64(seq), Duplicate: true, Fingerprint: text}, nil
		case ok1 && ok2:
			return broker.PublishResult{}, fmt.Errorf("%w: redis: %s", broker.ErrUnavailable, text)
		}
	}
	return broker.PublishResult{}, fmt.Errorf("%w: redis: publish script answered %v", broker.ErrUnavailable, reply)
}
