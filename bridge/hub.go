package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heraldhq/herald/internal/sse"
)

// Hub is the per-node fan-out: it holds one broker subscription and hands
// every event to the queue of each local subscriber whose patterns match,
// encoding the event's frame once and sharing the bytes.
//
// A subscriber's queue is bounded. A subscriber that falls so far behind
// that its queue is full is dropped: its stream ends and the client resumes
// with Last-Event-ID, replayed from the broker. Publishers and other
// subscribers never wait for it.
type Hub struct {
	broker    Broker
	types     TypeResolver
	log       *slog.Logger
	metrics   *metrics
	epoch     string
	queueSize int

	mu     sync.RWMutex // guards the indexes and closed; deliver holds it for reading
	exact  map[string]map[*subscriber]struct{}
	wild   map[string]*wildSubs
	all    map[*subscriber]struct{}
	closed bool

	// shards write to direct streams (see writer.go); set by start.
	shards    []*shard
	nextShard atomic.Uint32

	lifeMu  sync.Mutex // orders start and close; guards stopped and cancel
	stopped bool
	cancel  context.CancelFunc
	done    sync.WaitGroup // the heartbeat and shard goroutines
}

type wildSubs struct {
	pattern Pattern
	subs    map[*subscriber]struct{}
}

// Reasons a subscriber is dropped.
const (
	dropNone int32 = iota
	dropSlow
	dropShutdown
	dropGone  // a direct stream's client went away
	dropWrite // a shard's write to a direct stream failed
)

type subscriber struct {
	patterns []Pattern
	render   *Rendering // nil: the default JSON form
	queue    chan *Event
	done     chan struct{} // closed when the hub drops the subscriber
	reason   atomic.Int32
	// lastSeq is the last event handed to this subscriber; it keeps an
	// event that matches several of its patterns from being queued twice.
	// Touched only by deliver, which the broker serializes, or for a
	// direct subscriber by its shard.
	lastSeq uint64
	// d and shard are set for a direct stream (writer.go): its shard
	// writes to it, and its queue is used only while it lags.
	d     *direct
	shard *shard
}

// heartbeat is queued to every subscriber on the shared heartbeat schedule;
// its frame is a comment line.
var heartbeat = func() *Event {
	ev := &Event{}
	b := sse.AppendComment(nil, "")
	ev.frame.Store(&b)
	return ev
}()

func newHub(broker Broker, types TypeResolver, log *slog.Logger, m *metrics, queueSize int) *Hub {
	return &Hub{
		broker:    broker,
		types:     types,
		log:       log,
		metrics:   m,
		epoch:     broker.Epoch(),
		queueSize: queueSize,
		exact:     make(map[string]map[*subscriber]struct{}),
		wild:      make(map[string]*wildSubs),
		all:       make(map[*subscriber]struct{}),
	}
}

// start subscribes to the broker and starts the heartbeat schedule. It may
// race with close: a hub closed first starts nothing.
func (h *Hub) start(heartbeatEvery time.Duration) error {
	// Not h.mu: brokers may deliver (which takes h.mu) under their own
	// lock, which Subscribe takes too.
	h.lifeMu.Lock()
	defer h.lifeMu.Unlock()
	if h.stopped {
		return ErrClosed
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.broker.Subscribe(ctx, h.deliver); err != nil {
		cancel()
		return err
	}
	h.cancel = cancel
	shards := make([]*shard, max(1, runtime.GOMAXPROCS(0)))
	for i := range shards {
		shards[i] = newShard(h)
		h.done.Go(func() { shards[i].run(ctx.Done()) })
	}
	h.mu.Lock()
	h.shards = shards
	h.mu.Unlock()
	h.done.Go(func() { h.heartbeats(ctx, heartbeatEvery) })
	return nil
}

// subscribe registers a subscriber for patterns. Events accepted from now on
// are queued to it; call unsubscribe when done.
func (h *Hub) subscribe(patterns []Pattern, render *Rendering) (*subscriber, error) {
	return h.add(patterns, render, false)
}

// subscribeDirect registers a subscriber that its shard may write to
// directly once it has a connection (writer.go). Until the stream's
// goroutine settles it, it lags: its events are queued. Before the hub
// starts, it is an ordinary subscriber (s.d is nil).
func (h *Hub) subscribeDirect(patterns []Pattern, render *Rendering) (*subscriber, error) {
	return h.add(patterns, render, true)
}

func (h *Hub) add(patterns []Pattern, render *Rendering, isDirect bool) (*subscriber, error) {
	if render != nil {
		render.key() // computed before the rendering is shared
	}
	s := &subscriber{
		patterns: patterns,
		render:   render,
		queue:    make(chan *Event, h.queueSize),
		done:     make(chan struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	h.all[s] = struct{}{}
	h.metrics.subscribers.Inc()
	if !isDirect || len(h.shards) == 0 {
		index(h.exact, h.wild, s)
		h.mu.Unlock()
		return s, nil
	}
	s.d = &direct{lagging: true}
	s.shard = h.shards[h.nextShard.Add(1)%uint32(len(h.shards))]
	h.mu.Unlock()
	// Not under h.mu: the shard's index lock may be held for a whole
	// pass over its streams, and deliver must not wait for that.
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
	h.metrics.subscribers.Dec()
	if s.shard == nil {
		unindex(h.exact, h.wild, s)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	s.shard.remove(s)
}

// index adds s to the indexes of subscribers by literal topic and by
// wildcard pattern.
func index(exact map[string]map[*subscriber]struct{}, wild map[string]*wildSubs, s *subscriber) {
	for _, p := range s.patterns {
		if p.Literal() {
			set := exact[p.text]
			if set == nil {
				set = make(map[*subscriber]struct{})
				exact[p.text] = set
			}
			set[s] = struct{}{}
			continue
		}
		w := wild[p.text]
		if w == nil {
			w = &wildSubs{pattern: p, subs: make(map[*subscriber]struct{})}
			wild[p.text] = w
		}
		w.subs[s] = struct{}{}
	}
}

func unindex(exact map[string]map[*subscriber]struct{}, wild map[string]*wildSubs, s *subscriber) {
	for _, p := range s.patterns {
		if p.Literal() {
			if set := exact[p.text]; set != nil {
				delete(set, s)
				if len(set) == 0 {
					delete(exact, p.text)
				}
			}
			continue
		}
		if w := wild[p.text]; w != nil {
			delete(w.subs, s)
			if len(w.subs) == 0 {
				delete(wild, p.text)
			}
		}
	}
}

// A resumption is what a subscriber resuming after an event id gets before
// live events.
type resumption struct {
	// events are the retained events after the id, in Seq order.
	events []*Event
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
func (h *Hub) resume(ctx context.Context, patterns []Pattern, lastEventID string) (resumption, error) {
	after, known := ParseEventID(lastEventID)
	if !known {
		after = EventID{Epoch: "?"}
	}
	res, err := h.broker.Replay(ctx, patterns, after)
	if err != nil {
		// No gap: the history is still there, only unreachable. The
		// subscriber comes back with the same id and gets it then.
		return resumption{}, fmt.Errorf("%w: reading the history to resume from failed; retry with the same id: %v", ErrUnavailable, err)
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

// deliver is the broker's callback: it queues ev to every matching
// subscriber and hands it to the shards of direct streams, without
// waiting for any client.
func (h *Hub) deliver(ev *Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.exact[ev.Topic] {
		h.enqueue(s, ev)
	}
	for _, w := range h.wild {
		if w.pattern.Match(ev.Topic) {
			for s := range w.subs {
				h.enqueue(s, ev)
			}
		}
	}
	for _, sh := range h.shards {
		sh.offer(ev)
	}
}

func (h *Hub) enqueue(s *subscriber, ev *Event) {
	if s.lastSeq == ev.Seq {
		return
	}
	s.lastSeq = ev.Seq
	h.frameFor(ev, s.render) // encoded here, once, not by each writer
	select {
	case s.queue <- ev:
	default:
		h.drop(s, dropSlow)
	}
}

// drop ends a subscriber's stream; its handler unsubscribes it.
func (h *Hub) drop(s *subscriber, reason int32) {
	if s.reason.CompareAndSwap(dropNone, reason) {
		close(s.done)
		if reason == dropSlow {
			h.metrics.slowDrops.Inc()
		}
	}
}

// frame returns ev's SSE frame, encoding and caching it on first use. The
// JSON is rendered at most once per event on this node: by the publish path
// when the type may fail to render (which refuses the event then), or here
// on first delivery. Shards may ask for it at the same time: one renders,
// the others wait for it.
func (h *Hub) frame(ev *Event) []byte {
	if f := ev.frame.Load(); f != nil {
		return *f
	}
	ev.renders.mu.Lock()
	defer ev.renders.mu.Unlock()
	if f := ev.frame.Load(); f != nil {
		return *f
	}
	data := ev.json
	if data == nil {
		msg, err := decodePayload(h.types, ev.TypeURL, ev.Payload)
		if err == nil {
			data, err = renderJSON(h.types, msg, protojson.MarshalOptions{})
		}
		if err != nil {
			// Validated when published, so only a node that lacks the
			// schema gets here. Deliver what it can rather than drop.
			h.log.Warn("cannot render event as JSON", "topic", ev.Topic, "seq", ev.Seq, "err", err)
			data = []byte(`{"@type":` + quoteJSON(ev.TypeURL) + `,"@error":"payload type not known to this node"}`)
		}
	}
	id := EventID{Epoch: h.epoch, Seq: ev.Seq}
	b := make([]byte, 0, len(data)+len(ev.Type)+len(h.epoch)+48)
	b = sse.AppendEvent(b, id.String(), ev.Type, data)
	ev.frame.Store(&b)
	return b
}

// heartbeats queues a heartbeat to every subscriber once per interval: one
// schedule for the node instead of a timer per connection. A subscriber
// whose queue is not empty needs none. The shards write it to their direct
// streams.
func (h *Hub) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.mu.RLock()
			for _, sh := range h.shards {
				sh.offer(heartbeat)
			}
			for s := range h.all {
				if s.d == nil && len(s.queue) == 0 {
					select {
					case s.queue <- heartbeat:
					default:
					}
				}
			}
			h.mu.RUnlock()
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

func quoteJSON(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c != '"' && c != '\\' && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
