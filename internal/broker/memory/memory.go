// Package memory is Herald's embedded broker: an in-memory log per topic,
// bounded by count and age, and all of them together by bytes, for a
// single node. Its log is lost when the process stops, so every start has a
// new epoch: browsers that resume with an id from an earlier run are told
// they may have missed events.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/retention"
)

// Options configure a Broker. Zero values mean the defaults.
type Options struct {
	// MaxEvents is how many events each topic retains (default 1000).
	MaxEvents int
	// MaxAge is how long an event is retained (default 1h).
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 2m).
	IdempotencyWindow time.Duration
	// MaxBytes bounds the events retained across all topics, in bytes as
	// Event.Size counts them (default 256 MiB), so that many topics cannot
	// add up to MaxEvents × the largest event each. Accepting an event that
	// would go beyond it first removes the oldest retained events (lowest
	// Seq, whatever their topic): a removal by retention like any other, so
	// a resume from before them learns of the gap. Evicted counts them. An
	// event larger than MaxBytes, which would leave nothing retained, is
	// refused with broker.ErrEventTooLarge. Not counted, so the process
	// holds more: Go's overhead per event, and what the server attaches to
	// the events it renders (their JSON and SSE frames).
	MaxBytes int64
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Defaults for Options.
const (
	DefaultMaxEvents         = retention.DefaultMaxEvents
	DefaultMaxAge            = retention.DefaultMaxAge
	DefaultIdempotencyWindow = retention.DefaultIdempotencyWindow
	DefaultMaxBytes          = 256 << 20
)

// Broker is the in-memory broker. Its zero value is not usable; call New.
type Broker struct {
	opts  Options
	epoch string

	// mu guards every field below. No deliver call runs while it is held:
	// a delivery may write to sockets, and under mu it would hold up every
	// publish, on every topic, and every Replay.
	mu     sync.Mutex
	closed bool
	seq    uint64
	topics map[string]*topicLog
	dedup  map[dedupKey]dedupEntry
	dedupQ []dedupKey // in insertion (= expiry) order
	// dropped remembers, for topics the sweep removed, the highest Seq
	// they lost, so that a resume still learns of the gap; beyond
	// maxDropped topics the marks fold into droppedAll.
	dropped    map[string]uint64
	droppedAll uint64
	schemas    [][]byte

	// order has an entry for every retained event, in Seq order across
	// topics, so that MaxBytes evicts the oldest in O(1). Removals by
	// count and age leave their entries behind, to be skipped at the front
	// or compacted away (tidyOrder) once they are half of order; every
	// removal goes through removeHead, which keeps bytes and count.
	order         refQueue
	bytes         int64 // retained, as Event.Size counts them
	count         int   // retained events
	evictedEvents uint64
	evictedBytes  uint64

	// Delivery keeps the Broker contract (one deliver call at a time, in
	// Seq order, each event once) without mu, by having one drainer: only
	// the goroutine that set draining calls deliver, and it clears draining
	// (closing idle) once nothing is pending. A publisher that finds no
	// drainer becomes it and delivers its own event; one that finds a
	// drainer appends its event to pending, in Seq order as both happen
	// under mu, and returns. The publisher-drainer hands what was appended
	// meanwhile, and the role with it, to a goroutine (drain), so that its
	// own Publish does not wait for others' events. Close waits for idle.
	//
	// subs is copy-on-write: Subscribe and unsubscribing replace the
	// slice, never change it in place, so the drainer reads the copy it
	// took under mu without mu. It takes subs together with the events it
	// delivers to them, so an event accepted after Subscribe returned
	// reaches the new subscription.
	subs     []*subscription // a slice, not a map: every delivery ranges over it
	pending  []*broker.Event
	spare    []*broker.Event // the drainer's last batch, emptied, for pending to reuse
	draining bool
	idle     chan struct{} // closed when draining stops; made by the first to wait for it

	stop chan struct{}
	done chan struct{}

	// presence and revocations, with a lock of their own (presence.go).
	admin adminState
}

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.HealthChecker = (*Broker)(nil)
	_ broker.SchemaStore   = (*Broker)(nil)
	_ broker.Snapshotter   = (*Broker)(nil)
	_ broker.PresenceStore = (*Broker)(nil)
	_ broker.Revoker       = (*Broker)(nil)
)

type topicLog struct {
	events  []*broker.Event // ring buffer of retained events, oldest at head
	head    int
	n       int
	evicted uint64 // highest Seq evicted from this topic
}

// retains reports whether the event with Seq seq, once appended to t, is
// still retained: retention removes a topic's events oldest first.
func (t *topicLog) retains(seq uint64) bool {
	return t.n > 0 && seq >= t.events[t.head].Seq
}

type dedupKey struct{ topic, key string }

type dedupEntry struct {
	seq         uint64
	fingerprint string // of the event accepted with the key
	expires     time.Time
}

type subscription struct {
	deliver func(*broker.Event)
	// stopped is set when its context ends or the broker closes; the
	// drainer checks it before each call, so that delivery stops at once
	// even within a batch taken before.
	stopped atomic.Bool
	release func() bool // releases the context.AfterFunc; set under Broker.mu
}

// maxPending bounds the events accepted and not yet delivered: a
// publisher that finds more waits for the drainer to catch up, so that a
// slow deliver holds publishers back instead of growing the list.
const maxPending = 4096

// New returns a running broker; Close stops it.
func New(opts Options) *Broker {
	retention.Default(&opts.MaxEvents, &opts.MaxAge, &opts.IdempotencyWindow)
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Broker{
		opts:    opts,
		epoch:   broker.NewEpoch(),
		topics:  make(map[string]*topicLog),
		dedup:   make(map[dedupKey]dedupEntry),
		dropped: make(map[string]uint64),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go b.sweep()
	return b
}

// Epoch implements broker.Broker.
func (b *Broker) Epoch() string { return b.epoch }

// Healthy implements broker.HealthChecker.
func (b *Broker) Healthy(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	return nil
}

// Publish implements broker.Broker. When no other delivery is running,
// the subscribers get ev from the calling goroutine before Publish
// returns; otherwise the goroutine delivering gets it to them after the
// events before it.
func (b *Broker) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return broker.PublishResult{}, err
	}
	b.mu.Lock()
	res, err := b.accept(ev)
	if err != nil || res.Duplicate || len(b.subs) == 0 {
		b.mu.Unlock()
		return res, err
	}
	if b.draining {
		b.pending = append(b.pending, ev)
		var wait chan struct{}
		if len(b.pending) >= maxPending {
			wait = b.idleLocked()
		}
		b.mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done(): // ev is accepted all the same
			}
		}
		return res, nil
	}
	b.draining = true
	subs := b.subs
	b.mu.Unlock()
	deliverTo(subs, ev)
	b.mu.Lock()
	if len(b.pending) > 0 && !b.closed {
		// Other publishers' events came meanwhile: a goroutine of its own
		// delivers them, so that this Publish does not wait for them.
		b.mu.Unlock()
		go b.drain()
		return res, nil
	}
	b.stopDraining()
	b.mu.Unlock()
	return res, nil
}

// accept appends ev to its topic's log, or finds the event it repeats;
// with b.mu held.
func (b *Broker) accept(ev *broker.Event) (broker.PublishResult, error) {
	if b.closed {
		return broker.PublishResult{}, fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	now := b.opts.Now()
	var dk dedupKey
	if ev.IdempotencyKey != "" {
		b.expireDedup(now)
		dk = dedupKey{ev.Topic, ev.IdempotencyKey}
		if d, ok := b.dedup[dk]; ok {
			return broker.PublishResult{Seq: d.seq, Duplicate: true, Fingerprint: d.fingerprint}, nil
		}
	}
	size := int64(ev.Size())
	if size > b.opts.MaxBytes {
		return broker.PublishResult{}, fmt.Errorf("%w: %d bytes, more than the memory broker retains across all topics (MaxBytes %d)",
			broker.ErrEventTooLarge, size, b.opts.MaxBytes)
	}
	b.seq++
	ev.Seq = b.seq
	ev.Time = now
	if dk.key != "" {
		b.dedup[dk] = dedupEntry{seq: ev.Seq, fingerprint: ev.Fingerprint, expires: now.Add(b.opts.IdempotencyWindow)}
		b.dedupQ = append(b.dedupQ, dk)
	}
	ev.Fingerprint = "" // kept with the key: delivered and replayed events carry none
	t := b.topics[ev.Topic]
	if t == nil {
		t = &topicLog{events: make([]*broker.Event, min(b.opts.MaxEvents, 16)), evicted: b.dropped[ev.Topic]}
		delete(b.dropped, ev.Topic)
		b.topics[ev.Topic] = t
	}
	b.expire(t, now)
	if t.n >= b.opts.MaxEvents {
		b.removeHead(t)
	}
	b.makeRoom(size)
	t.push(ev, b.opts.MaxEvents)
	b.order.push(ref{t, ev.Seq})
	b.bytes += size
	b.count++
	b.tidyOrder()
	return broker.PublishResult{Seq: ev.Seq}, nil
}

// makeRoom evicts the oldest retained events, across topics, until size
// more bytes fit within MaxBytes; with b.mu held, and size at most
// MaxBytes.
func (b *Broker) makeRoom(size int64) {
	for b.bytes+size > b.opts.MaxBytes && b.order.len() > 0 {
		r := b.order.pop()
		if !r.t.retains(r.seq) {
			continue // removed by count or age already
		}
		// The oldest retained event of all is its topic's oldest.
		ev := b.removeHead(r.t)
		b.evictedEvents++
		b.evictedBytes += uint64(ev.Size())
	}
}

// removeHead removes t's oldest event, as retention does: Replay reports a
// gap to positions before it. With b.mu held.
func (b *Broker) removeHead(t *topicLog) *broker.Event {
	ev := t.events[t.head]
	t.evicted = ev.Seq
	t.events[t.head] = nil
	if t.head++; t.head == len(t.events) {
		t.head = 0
	}
	t.n--
	b.bytes -= int64(ev.Size())
	b.count--
	return ev
}

// tidyOrder drops the entries of removed events from the front of
// b.order, and compacts it once they are at least half of it (so that it
// stays within twice the retained events, plus a little) or it uses a
// quarter of its ring (giving back what a burst grew). Each compaction
// follows as many pops or publishes as it costs: O(1) amortised per
// publish. With b.mu held.
func (b *Broker) tidyOrder() {
	for b.order.len() > 0 {
		if r := b.order.front(); r.t.retains(r.seq) {
			break
		}
		b.order.pop()
	}
	n := b.order.len()
	if n >= 2*b.count+64 || len(b.order.buf) > 1024 && n < len(b.order.buf)/4 {
		// Every retained event has one entry: b.count of them stay.
		b.order.compact(func(r ref) bool { return r.t.retains(r.seq) }, 2*b.count)
	}
}

// Evicted reports how many events, and how many of their bytes as
// Event.Size counts them, were removed to keep retention within MaxBytes
// since New. Removals by MaxEvents and MaxAge are not counted: a count
// that grows means that MaxBytes, not those, bounds the history topics
// keep.
func (b *Broker) Evicted() (events, bytes uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.evictedEvents, b.evictedBytes
}

// drain delivers the pending events until there are none, from the
// drainer, with b.mu released while it delivers.
func (b *Broker) drain() {
	b.mu.Lock()
	for len(b.pending) > 0 && !b.closed {
		batch, subs := b.pending, b.subs
		b.pending = b.spare[:0]
		b.mu.Unlock()
		for _, ev := range batch {
			deliverTo(subs, ev)
		}
		clear(batch)
		b.mu.Lock()
		b.spare = batch[:0]
	}
	b.stopDraining()
	b.mu.Unlock()
}

// deliverTo calls each subscription that has not stopped with ev.
func deliverTo(subs []*subscription, ev *broker.Event) {
	for _, s := range subs {
		if !s.stopped.Load() {
			s.deliver(ev)
		}
	}
}

// stopDraining ends the drainer's turn, dropping what is pending (nothing,
// unless the broker closed); with b.mu held.
func (b *Broker) stopDraining() {
	clear(b.pending)
	b.pending = b.pending[:0]
	b.draining = false
	if b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// idleLocked returns a channel closed when the drainer stops; with b.mu
// held, while draining.
func (b *Broker) idleLocked() chan struct{} {
	if b.idle == nil {
		b.idle = make(chan struct{})
	}
	return b.idle
}

// push appends ev, growing the ring up to max; t holds fewer than max
// events.
func (t *topicLog) push(ev *broker.Event, limit int) {
	if t.n == len(t.events) {
		grown := make([]*broker.Event, min(limit, max(2*len(t.events), 16)))
		for i := range t.n {
			grown[i] = t.at(i)
		}
		t.events, t.head = grown, 0
	}
	t.events[(t.head+t.n)%len(t.events)] = ev
	t.n++
}

func (t *topicLog) at(i int) *broker.Event { return t.events[(t.head+i)%len(t.events)] }

// expire drops events older than MaxAge from the head of t.
func (b *Broker) expire(t *topicLog, now time.Time) {
	cutoff := now.Add(-b.opts.MaxAge)
	for t.n > 0 && t.at(0).Time.Before(cutoff) {
		b.removeHead(t)
	}
}

func (b *Broker) expireDedup(now time.Time) {
	i := 0
	for ; i < len(b.dedupQ); i++ {
		k := b.dedupQ[i]
		if d, ok := b.dedup[k]; ok && now.Before(d.expires) {
			break
		}
		delete(b.dedup, k)
	}
	if i > 0 {
		b.dedupQ = slices.Delete(b.dedupQ, 0, i)
	}
}

// sweep expires old events of idle topics and drops empty topics, so memory
// follows retention even when nothing is published.
func (b *Broker) sweep() {
	defer close(b.done)
	every := min(max(b.opts.MaxAge/10, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.mu.Lock()
			now := b.opts.Now()
			b.expireDedup(now)
			for name, tl := range b.topics {
				b.expire(tl, now)
				if tl.n == 0 {
					b.dropTopic(name, tl)
				}
			}
			b.tidyOrder()
			b.mu.Unlock()
		}
	}
}

// maxDropped bounds how many dropped topics are remembered one by one.
const maxDropped = 10000

// dropTopic forgets an empty topic but remembers what it lost.
func (b *Broker) dropTopic(name string, t *topicLog) {
	delete(b.topics, name)
	t.events = nil // b.order may point at t a while longer
	lost := t.evicted
	if lost == 0 {
		return
	}
	if len(b.dropped) >= maxDropped {
		for n, s := range b.dropped {
			b.droppedAll = max(b.droppedAll, s)
			delete(b.dropped, n)
		}
	}
	b.dropped[name] = lost
}

// Subscribe implements broker.Broker. deliver is called with no lock of
// the broker held, from a publishing goroutine or one the broker starts.
// It must not call Close, which waits for it.
func (b *Broker) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := &subscription{deliver: deliver}
	b.subs = append(slices.Clip(b.subs), s) // a new array: the drainer may be reading the old one
	s.release = context.AfterFunc(ctx, func() { b.unsubscribe(s) })
	return nil
}

func (b *Broker) unsubscribe(s *subscription) {
	s.stopped.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.subs, s); i >= 0 {
		b.subs = slices.Delete(slices.Clone(b.subs), i, i+1)
	}
}

// Replay implements broker.Broker.
func (b *Broker) Replay(ctx context.Context, patterns []broker.Pattern, after broker.EventID) (broker.ReplayResult, error) {
	var res broker.ReplayResult
	if err := ctx.Err(); err != nil {
		return res, err
	}
	from := after.Seq
	if after.Epoch != b.epoch {
		// A position from another log: everything retained is news to
		// the subscriber, and it may have missed more.
		res.Truncated = after.Seq > 0 || after.Epoch != ""
		from = 0
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return res, fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	cutoff := b.opts.Now().Add(-b.opts.MaxAge)
	var out []*broker.Event
	sources := 0
	if from < b.droppedAll && len(patterns) > 0 {
		res.Truncated = true // a forgotten dropped topic may have matched
	}
	for name, lost := range b.dropped {
		if lost > from && broker.MatchAny(patterns, name) {
			res.Truncated = true
		}
	}
	for name, t := range b.topics {
		if !broker.MatchAny(patterns, name) {
			continue
		}
		if t.evicted > from {
			res.Truncated = true
		}
		i := searchAfter(t, from)
		added := false
		for ; i < t.n; i++ {
			ev := t.at(i)
			if ev.Time.Before(cutoff) {
				res.Truncated = true
				continue
			}
			out = append(out, ev)
			added = true
		}
		if added {
			sources++
		}
	}
	b.mu.Unlock()
	if sources > 1 {
		slices.SortFunc(out, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	}
	res.Events = out
	return res, ctx.Err()
}

// Snapshot implements broker.Snapshotter. It reads every topic under b.mu,
// the lock publishers take, so that the snapshot is of the last Seq given
// out: a publish waits for it as long as for a Replay of as many topics.
// Events accepted and not yet delivered are in it; their deliveries come
// with Seq <= Upto, for the server to skip.
func (b *Broker) Snapshot(ctx context.Context, patterns []broker.Pattern, limit int) (broker.SnapshotResult, error) {
	var res broker.SnapshotResult
	if limit < 1 {
		return res, fmt.Errorf("%w: snapshot limit is %d; it must be at least 1", broker.ErrBadRequest, limit)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return res, fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	res.Upto = b.seq
	if len(patterns) > 0 {
		cutoff := b.opts.Now().Add(-b.opts.MaxAge)
		for name, t := range b.topics {
			if t.n == 0 || !broker.MatchAny(patterns, name) {
				continue
			}
			ev := t.at(t.n - 1)
			if ev.Time.Before(cutoff) {
				continue // aged out, all of the topic, before the sweep removed it
			}
			if len(res.Events) == limit {
				res.More = true
				break
			}
			res.Events = append(res.Events, ev)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(res.Events, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	if err := ctx.Err(); err != nil {
		return broker.SnapshotResult{}, err
	}
	return res, nil
}

// searchAfter returns the index of the first retained event with Seq > seq.
func searchAfter(t *topicLog, seq uint64) int {
	lo, hi := 0, t.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.at(m).Seq <= seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Close implements broker.Broker. It returns once no deliver call is
// running, the second time as the first.
func (b *Broker) Close() error {
	b.mu.Lock()
	first := !b.closed
	if first {
		b.closed = true
		for _, s := range b.subs {
			s.stopped.Store(true)
			s.release()
		}
		b.subs = nil
	}
	var wait chan struct{}
	if b.draining {
		wait = b.idleLocked()
	}
	b.mu.Unlock()
	if wait != nil {
		<-wait
	}
	if first {
		close(b.stop)
	}
	<-b.done
	return nil
}

// SaveSchemas implements broker.SchemaStore. Like events, schemas pushed to
// the memory broker live as long as the process.
func (b *Broker) SaveSchemas(_ context.Context, set []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	b.schemas = append(b.schemas, slices.Clone(set))
	return nil
}

// LoadSchemas implements broker.SchemaStore.
func (b *Broker) LoadSchemas(_ context.Context, skip int) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if skip >= len(b.schemas) {
		return nil, nil
	}
	return slices.Clone(b.schemas[skip:]), nil
}
