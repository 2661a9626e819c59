package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// The fan-out engine: the Hub, its shards (shard.go) and the streams they
// feed (stream.go). Its rules, which every change to these files keeps:
//
// # Goroutines
//
//   - The broker calls Hub.deliver from one goroutine at a time, in Seq
//     order, holding none of its own locks (the Broker contract).
//   - deliver hands an event to every matching queued subscriber (gRPC
//     Subscribe calls) with a send on its queue that never waits, and then
//     to each shard.
//   - A shard writes to its direct subscribers: every SSE stream, once
//     its history is written. One shard per core writes to the sockets of
//     plain HTTP/1.1 streams taken over from net/http, with writes that
//     never wait; the others (shard_through.go) write HTTP/2 and TLS
//     streams through net/http, with writes that wait, never holding
//     shard.mu and never from the delivering goroutine, and a watchdog
//     that goes on without a write that waits too long. One goroutine at
//     a time drains a shard's pending events (shard.running): the
//     delivering goroutine itself when the event has few subscribers in a
//     shard of plain streams, the shard's own goroutine otherwise, which
//     makes at most one pass per coalescing window (shard.pace).
//   - Each stream has a goroutine that writes what its queue brings, with
//     blocking writes bounded by the write timeout. A direct stream's runs
//     only while it has work (stream.wake): while it lags (below), and for
//     its last words; whoever gives it work (enqueue, drop, its token's
//     expiry) wakes it.
//   - One goroutine of the hub queues heartbeats to every subscriber on one
//     schedule.
//
// # Lock order
//
// A lock may be taken while holding those to its left, never the reverse:
//
//	Hub.lifeMu → (the broker's own locks, in Subscribe)
//	Hub.mu     → rendered.mu, itemQueue.mu
//	shard.mu   → direct.mu → rendered.mu, itemQueue.mu
//
// Hub.mu and shard.mu are never held together; shard.qmu,
// streamHandler.takenMu, presence.sampleMu and the limiters' locks are
// taken alone. No socket is written while Hub.mu or any lock of the
// broker is held: sockets are written by a shard (holding the
// subscriber's direct.mu, and shard.mu for reading when it writes one
// event to a plain shard's streams; a batch is gathered under shard.mu
// and written after it) or by a stream's goroutine, holding nothing.
//
// # Who touches what
//
//   - subscriber.lastSeq, which keeps an event that matches several of a
//     subscriber's patterns from reaching it twice: for a queued subscriber,
//     only deliver writes it (under Hub.mu held for reading: safe because
//     deliver never runs twice at once); for a direct subscriber, only its
//     shard's drainer (under shard.mu held for reading: safe because a
//     shard has one drainer at a time).
//   - subscriber.queue: any goroutine may push, never waiting (deliver, a
//     shard for a lagging subscriber, heartbeats); only the stream's
//     goroutine pops (queue.go).
//   - direct.out, shard.touched and shard.delivered: only the shard's drainer (for a shard
//     through net/http, the goroutine that runs it: the watchdog may hand
//     it to a new one, and the old one then touches only the subscriber
//     whose write it waits in).
//   - A deliveryTrace (trace.go, tracing on): deliver and every shard it
//     offered the event to add their counts and call done once each, with
//     atomics and no lock; the last to call done ends the span.
//   - direct's other fields: whoever holds direct.mu.
//
// # A direct subscriber's states
//
//	lagging  the stream's goroutine writes, from the queue; the shard
//	         queues events to it instead of writing. Every direct
//	         subscriber starts here, until its history is written.
//	settled  (not lagging) the shard writes each event to its socket.
//	closed   the stream's goroutine has taken the connection back for its
//	         last words, or the stream ended; the shard skips it.
//
//	stuck    (through net/http only) lagging for good: a write of its
//	         shard waited longer than stuckAfter. The shard queues its
//	         events without taking direct.mu, which that write holds;
//	         the stream's goroutine takes direct.mu once before writing,
//	         to wait that write out.
//
// lagging → settled: only the stream's goroutine (settle), with its queue
// empty and not stuck. settled → lagging: only the shard's drainer, when
// the socket took part of a frame; the rest is queued as an
// itemRestOfFrame, ahead of every later event. → stuck: the shard's
// watchdog. → closed: the stream's goroutine (detach), or the shard on a
// failed write.
//
// # Dropping
//
// A subscriber is dropped, its done channel closed once with the reason,
// by whoever finds it too slow (its queue is full), broken (a write
// failed), gone (hangups, the connection watcher) or by shutdown. Its stream's
// goroutine then says its last words, ends and unsubscribes it; nothing
// else ever waits for it.

// Hub is the per-node fan-out: it holds one broker subscription and hands
// every event to each local subscriber whose patterns match, encoding the
// event's frame once and sharing the bytes.
//
// It takes that subscription when its first subscriber comes, and keeps
// it until it closes: a node that only takes publishes (behind a load
// balancer for publishers, say) reads nothing back from a shared broker.
//
// A subscriber's queue is bounded. A subscriber that falls so far behind
// that its queue is full is dropped: its stream ends and the client resumes
// with Last-Event-ID, replayed from the broker. Publishers and other
// subscribers never wait for it.
type Hub struct {
	broker    broker.Broker
	types     TypeResolver
	log       *slog.Logger
	metrics   *metrics
	epoch     string
	queueSize int
	filters   *filterCache
	// behind paces the log line of events the broker lost for this node.
	behind logSampler
	// tracer makes the delivery spans; nil: tracing is off. Set before
	// start.
	tracer *tracer
	// coalesce is the least time between two passes of a shard
	// (Config.CoalesceWindow; 0 or less: none). Set before start.
	coalesce time.Duration

	mu  sync.RWMutex // guards idx, all, counts, shards and closed; deliver holds it for reading
	idx subIndex     // the queued subscribers
	all map[*subscriber]struct{}
	// counts are the subscribers of each topic or pattern, as subscribed
	// (presence.go reports them): kept as subscribers come and go, so
	// that delivery pays nothing for them.
	counts map[string]int32
	closed bool
	// shards write to direct subscribers (shard.go); set by start. The
	// first plainShards write sockets taken over, the rest through
	// net/http (shard_through.go).
	shards      []*shard
	plainShards int
	nextShard   atomic.Uint32

	lifeMu  sync.Mutex // orders start, follow and close; guards stopped, cancel and the feed fields
	stopped bool
	cancel  context.CancelFunc
	done    sync.WaitGroup // the heartbeat and shard goroutines
	// feed is the context of the broker subscription, set by start; the
	// subscription is taken by follow, for the first subscriber, or by
	// start when one came before it (feedWanted).
	feed       context.Context
	feedWanted bool
	following  atomic.Bool // subscribed to the broker
	// feedErr is why the last try to subscribe failed, at feedFailed:
	// tries within followRetry of it fail the same way at once, so that
	// the clients of an outage do not queue up on lifeMu behind one
	// broker call after another.
	feedErr    error
	feedFailed time.Time
}

// followRetry is how long the hub waits after a failed try to subscribe to
// the broker before it tries again (a time.Duration; tests shorten it).
var followRetry atomic.Int64

func init() { followRetry.Store(int64(time.Second)) }

// Reasons a subscriber is dropped.
const (
	dropNone int32 = iota
	dropSlow
	dropShutdown
	dropGone    // a direct stream's client went away
	dropWrite   // a shard's write to a direct stream failed
	dropRevoked // its token's subject was revoked
)

type subscriber struct {
	patterns []broker.Pattern
	subject  string     // the token's sub claim, or "": what a revocation names
	render   *Rendering // nil: the default JSON form
	filter   *filter    // nil: every event
	queue    *itemQueue
	done     chan struct{} // closed when the hub drops the subscriber
	reason   atomic.Int32
	// lastSeq is the last event handed to this subscriber (see "Who
	// touches what" above).
	lastSeq uint64
	// d and shard are set for a direct subscriber: its shard writes to
	// it, and its queue is used only while it lags.
	d     *direct
	shard *shard
}

// An item is what a subscriber's queue (and a shard's pending list) holds.
type item struct {
	kind itemKind
	ev   *broker.Event // for itemEvent
}

type itemKind uint8

const (
	// itemEvent: an event to write in the subscriber's rendering.
	itemEvent itemKind = iota
	// itemHeartbeat: a comment line, the same in every rendering, to keep
	// an idle stream open through proxies.
	itemHeartbeat
	// itemRestOfFrame: the unwritten rest of a frame the shard could write
	// only in part (direct.pending), to write before what follows it.
	itemRestOfFrame
)

func newHub(b broker.Broker, types TypeResolver, log *slog.Logger, m *metrics, queueSize int) *Hub {
	return &Hub{
		broker:    b,
		types:     types,
		log:       log,
		metrics:   m,
		epoch:     b.Epoch(),
		queueSize: queueSize,
		filters:   newFilterCache(),
		idx:       newSubIndex(),
		all:       make(map[*subscriber]struct{}),
		counts:    make(map[string]int32),
	}
}

// start starts the shards and the heartbeat schedule, and subscribes to
// the broker if a subscriber came before it. It may race with close: a
// hub closed first starts nothing.
func (h *Hub) start(heartbeatEvery time.Duration) error {
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	if h.stopped {
		return broker.ErrClosed
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.feed = ctx
	if h.feedWanted {
		if err := h.subscribeLocked(); err != nil {
			h.feed = nil
			cancel()
			return err
		}
	}
	h.cancel = cancel
	// Until the shards are set, every subscriber is a queued one, so that
	// the events delivered before then reach everyone.
	// One shard per core writes sockets taken over; more write through
	// net/http (HTTP/2 and TLS), so that a write that waits for its
	// client holds up few other streams until the watchdog sees it.
	n := max(1, runtime.GOMAXPROCS(0))
	shards := make([]*shard, n+throughShards(n))
	for i := range shards {
		shards[i] = newShard(h)
		shards[i].stop = ctx.Done()
		if i >= n {
			shards[i].through = newThroughShard(shards[i])
		}
		// The shard's count in done goes with whichever goroutine runs
		// it (shard_through.go hands it over).
		h.done.Add(1)
		go shards[i].loop()
	}
	h.mu.Lock()
	h.shards, h.plainShards = shards, n
	h.mu.Unlock()
	h.done.Go(func() { h.heartbeats(ctx, heartbeatEvery) })
	return nil
}

// follow makes sure the hub is subscribed to the broker, so that every
// event accepted once it returns is delivered to the hub: a subscriber
// registered after it misses none. Before start it only asks start to
// subscribe.
func (h *Hub) follow() error {
	if h.following.Load() {
		return nil
	}
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	switch {
	case h.following.Load():
		return nil
	case h.stopped:
		return broker.ErrClosed
	case h.feed == nil:
		h.feedWanted = true
		return nil
	case h.feedErr != nil && time.Since(h.feedFailed) < time.Duration(followRetry.Load()):
		return h.feedErr
	}
	return h.subscribeLocked()
}

// subscribeLocked subscribes to the broker; with lifeMu held.
func (h *Hub) subscribeLocked() error {
	if err := h.broker.Subscribe(h.feed, h.deliver); err != nil {
		h.feedErr, h.feedFailed = err, time.Now()
		return err
	}
	h.feedErr = nil
	h.following.Store(true)
	return nil
}

// subscribe registers a queued subscriber for patterns, on behalf of the
// token subject (or ""). Events accepted from now on (that pass f, when
// set) are queued to it; call unsubscribe when done.
func (h *Hub) subscribe(subject string, patterns []broker.Pattern, render *Rendering, f *filter) (*subscriber, error) {
	return h.add(subject, patterns, render, f, false, false)
}

// subscribeDirect registers a subscriber that its shard may write to
// directly once it has a connection (shard.go). Until the stream's
// goroutine settles it, it lags: its events are queued. Before the hub
// starts, it is an ordinary queued subscriber (s.d is nil).
func (h *Hub) subscribeDirect(subject string, patterns []broker.Pattern, render *Rendering, f *filter, blocking bool) (*subscriber, error) {
	return h.add(subject, patterns, render, f, true, blocking)
}

func (h *Hub) add(subject string, patterns []broker.Pattern, render *Rendering, f *filter, isDirect, blocking bool) (*subscriber, error) {
	if err := h.follow(); err != nil {
		return nil, err
	}
	if render != nil {
		render.key() // computed before the rendering is shared
	}
	s := &subscriber{
		patterns: patterns,
		subject:  subject,
		render:   render,
		filter:   f,
		queue:    newItemQueue(h.queueSize),
		done:     make(chan struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, broker.ErrClosed
	}
	h.all[s] = struct{}{}
	h.count(s, 1)
	h.metrics.subscribers.Inc()
	if !isDirect || len(h.shards) == 0 {
		h.idx.add(s)
		h.mu.Unlock()
		return s, nil
	}
	s.d = &direct{lagging: true}
	i, plain := h.nextShard.Add(1), uint32(max(1, h.plainShards))
	switch {
	case !blocking || len(h.shards) <= int(plain):
		i %= min(plain, uint32(len(h.shards)))
	default:
		i = plain + i%(uint32(len(h.shards))-plain)
	}
	s.shard = h.shards[i]
	h.mu.Unlock()
	// Not under h.mu (the lock order): the shard's lock may be held for a
	// whole pass over its subscribers.
	s.shard.add(s)
	return s, nil
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if _, ok := h.all[s]; !ok {
		h.mu.Unlock()
		return
	}
	delete(h.all, s)
	h.count(s, -1)
	h.metrics.subscribers.Dec()
	if s.shard == nil {
		h.idx.remove(s)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	s.shard.remove(s)
}

// count adds d to the counts of s's patterns; with h.mu held.
func (h *Hub) count(s *subscriber, d int32) {
	for _, p := range s.patterns {
		n := h.counts[p.String()] + d
		if n <= 0 {
			delete(h.counts, p.String())
		} else {
			h.counts[p.String()] = n
		}
	}
}

// presence returns the subscribers of each topic or pattern, as
// subscribed, and the number of subscribers.
func (h *Hub) presence() (counts map[string]int32, total int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	counts = make(map[string]int32, len(h.counts))
	for t, n := range h.counts {
		counts[t] = n
	}
	return counts, len(h.all)
}

// revoke drops every subscriber whose subject is revoked.
func (h *Hub) revoke(revoked func(subject string) bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.all {
		if s.subject != "" && revoked(s.subject) {
			h.drop(s, dropRevoked)
		}
	}
}

// deliver is the broker's callback: it queues ev to every matching queued
// subscriber and offers it to the shards, without waiting for any client.
//
// With tracing on, it makes the event's delivery span on this node
// (trace.go), which the shards the event goes to end.
func (h *Hub) deliver(ev *broker.Event) {
	switch ev.Type {
	case broker.LostType:
		h.lost(ev.Topic)
		return
	case broker.LostSpanningType:
		h.lostSpanning()
		return
	}
	var dt *deliveryTrace
	if h.tracer != nil {
		dt = h.tracer.startDelivery(ev, h.epoch)
	}
	queued, n := 0, 0
	h.mu.RLock()
	h.idx.each(ev.Topic, func(s *subscriber) {
		if s.lastSeq == ev.Seq || s.reason.Load() != dropNone {
			return // matched by another of its patterns, or ending
		}
		s.lastSeq = ev.Seq
		if !h.wants(s, ev) {
			return
		}
		f := h.frameFor(ev, s.render) // encoded here, once, not by each stream
		h.enqueue(s, item{ev: ev})
		queued++
		n += len(f)
	})
	shards := h.shards
	h.mu.RUnlock()
	for _, sh := range shards {
		if dt != nil {
			dt.pending.Add(1) // before the shard can be done with it
		}
		if !sh.offer(item{ev: ev}, dt) && dt != nil {
			dt.done()
		}
	}
	if dt != nil {
		dt.add(queued, n)
		dt.done()
	}
}

// lost ends the streams of a topic whose events the broker lost for this
// node (broker.LostType), or every stream for an empty topic (the broker
// cannot tell which topics lost events): they resume from their last
// event, and Replay tells them of the gap with a herald.gap, where carrying
// on would skip events without a word. They end as too slow: it was this
// node that fell behind.
func (h *Hub) lost(topic string) {
	h.noteBehind(topic)
	if topic == "" {
		h.dropWhere(func(*subscriber) bool { return true })
		return
	}
	h.mu.RLock()
	h.idx.each(topic, func(s *subscriber) { h.drop(s, dropSlow) })
	shards := h.shards
	h.mu.RUnlock()
	for _, sh := range shards {
		sh.mu.RLock()
		sh.idx.each(topic, func(s *subscriber) { h.drop(s, dropSlow) })
		sh.mu.RUnlock()
	}
}

// lostSpanning ends the streams of more than one topic (a pattern, or
// several topics), where the broker lost events it cannot name the topics
// of yet (broker.LostSpanningType): each would be handed a later event of
// another topic next and resume past the loss. A stream of one topic goes
// on until its topic's own marker, if the topic lost any.
func (h *Hub) lostSpanning() {
	h.noteBehind("(not yet known)")
	h.dropWhere(func(s *subscriber) bool {
		return len(s.patterns) > 1 || (len(s.patterns) == 1 && !s.patterns[0].Literal())
	})
}

// noteBehind logs, at most every 30 s, that the broker lost events of
// topic for this node.
func (h *Hub) noteBehind(topic string) {
	if n, ok := h.behind.note(time.Now()); ok {
		h.log.Warn("this node fell behind the broker's retention and lost events: the streams of their topics resume, with a herald.gap", "topic", topic, "times", n)
	}
}

// dropWhere ends, as too slow, every subscriber that which picks.
func (h *Hub) dropWhere(which func(*subscriber) bool) {
	h.mu.RLock()
	for s := range h.all {
		if which(s) {
			h.drop(s, dropSlow)
		}
	}
	h.mu.RUnlock()
}

// wants reports whether s's filter lets ev through. A topic's deletion
// always passes: it says what state to forget, which every view of the
// topic needs, and carries no payload to filter.
func (h *Hub) wants(s *subscriber, ev *broker.Event) bool {
	return s.filter == nil || isDeletion(ev) || h.matches(ev, s.filter)
}

// enqueue queues it to s without waiting; a full queue drops s as too
// slow. Heartbeats are never worth a drop: one is queued only to an empty
// queue, and skipped when it does not fit.
func (h *Hub) enqueue(s *subscriber, it item) {
	if it.kind == itemHeartbeat {
		if s.queue.len() == 0 {
			s.queue.push(it)
			s.wake()
		}
		return
	}
	if !s.queue.push(it) {
		h.drop(s, dropSlow)
		return
	}
	s.wake()
}

// wake starts a direct subscriber's stream goroutine if it is not running
// (stream.wake). Other subscribers' goroutines wait on their queue and
// done channel; they need no waking.
func (s *subscriber) wake() {
	if s.d != nil {
		if st := s.d.stream.Load(); st != nil {
			st.wake()
		}
	}
}

// drop ends a subscriber's stream; its goroutine unsubscribes it.
func (h *Hub) drop(s *subscriber, reason int32) {
	if s.reason.CompareAndSwap(dropNone, reason) {
		close(s.done)
		if reason == dropSlow {
			h.metrics.slowDrops.Inc()
		}
		s.wake()
	}
}

// A resumption is what a subscriber resuming after an event id gets before
// live events.
type resumption struct {
	// events are the retained events after the id, in Seq order.
	events []*broker.Event
	// gap, when not empty, says why events may have been missed: the id
	// reaches back further than the retained history, belongs to another
	// epoch, or is not an id at all.
	gap string
	// lastSeq is the Seq of the last replayed event; live events up to it
	// are duplicates to skip.
	lastSeq uint64
}

// resume reads the history after lastEventID on topics matching patterns.
// Call it after subscribe, so that no event falls between the history and
// the live queue; skip queued events with Seq <= lastSeq. A garbled or
// foreign id is no error: the subscriber gets what is retained, with a gap.
// An error (ErrUnavailable) means the broker could not be read: no gap is
// known, and the subscriber should try again with the same id.
func (h *Hub) resume(ctx context.Context, patterns []broker.Pattern, lastEventID string) (resumption, error) {
	after, known := broker.ParseEventID(lastEventID)
	if !known {
		after = broker.EventID{Epoch: "?"}
	}
	res, err := h.broker.Replay(ctx, patterns, after)
	if err != nil {
		// No gap: the history is still there, only unreachable. The
		// subscriber comes back with the same id and gets it then.
		return resumption{}, fmt.Errorf("%w: reading the history to resume from failed; retry with the same id: %v", broker.ErrUnavailable, err)
	}
	r := resumption{events: res.Events}
	if n := len(res.Events); n > 0 {
		r.lastSeq = res.Events[n-1].Seq
	}
	if res.Truncated {
		h.metrics.gaps.Inc()
		switch {
		case !known:
			r.gap = "this id was not issued by this server"
		case after.Epoch != h.epoch:
			r.gap = "this id belongs to an earlier history that is no longer available"
		default:
			r.gap = "history no longer reaches back to this id"
		}
	}
	h.metrics.replayed.Add(float64(len(res.Events)))
	return r, nil
}

// heartbeats queues a heartbeat to every subscriber once per interval: one
// schedule for the node instead of a timer per connection. A subscriber
// whose queue is not empty needs none. The shards write it to their direct
// subscribers.
func (h *Hub) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.mu.RLock()
			for s := range h.all {
				s.queue.trim()
				if s.d == nil {
					h.enqueue(s, item{kind: itemHeartbeat})
				}
			}
			shards := h.shards
			h.mu.RUnlock()
			for _, sh := range shards {
				sh.offer(item{kind: itemHeartbeat}, nil)
			}
		}
	}
}

// close drops every subscriber with the shutdown reason and stops the
// broker subscription. New subscriptions are refused.
func (h *Hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for s := range h.all {
		h.drop(s, dropShutdown)
	}
	h.mu.Unlock()
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	h.stopped = true
	if h.cancel != nil { // started: stop the subscription, heartbeats and shards
		h.cancel()
		h.done.Wait()
	}
}
