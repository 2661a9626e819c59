package bridge

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Shard writers: a plain HTTP/1.1 stream is taken over from net/http once
// its response head is out (takeover.go), and from then on one of the
// hub's shards writes each event's shared frame to its socket itself, in
// one pass over the subscribers of a topic, with a write that never waits.
// The stream's own goroutine runs only when it has something to do,
// instead of being woken for every event as a goroutine per subscriber
// would be: that wake-up cost more than the write itself at low event
// rates, and a parked goroutine's stack was most of an idle stream's
// memory.
//
// A socket that cannot take a whole frame at once puts its subscriber
// behind (it lags): the rest of the frame and the events after it go to
// the subscriber's queue, which its goroutine writes with ordinary blocking
// writes and the write timeout, exactly as for any other stream, and hands
// back to the shard once the queue is empty. A queue that overflows drops
// the subscriber as too slow. The engine's rules are in hub.go.
//
// HTTP/2 streams, TLS connections and gRPC subscribers keep a goroutine
// and a queue each; so does every stream until its history is replayed.

// inlineMax is the most subscribers an event may have in a shard for the
// delivering goroutine to write to them itself; a larger fan-out wakes the
// shard's goroutine, so that the shards write in parallel.
const inlineMax = 8

// coalesceMax bounds what is gathered for one subscriber before a write:
// by a shard from a batch of events, by a stream's goroutine from its
// queue or the history it replays.
const coalesceMax = 32 << 10

// direct is the part of a subscriber that a shard writes to.
type direct struct {
	mu sync.Mutex // serializes writes between the shard and the stream's goroutine
	// lagging, closed: the subscriber's state (hub.go).
	lagging bool
	closed  bool
	// minSeq: events up to it were replayed from the history; skip them.
	minSeq uint64
	// pending is the unwritten rest of a frame; an itemRestOfFrame in the
	// queue marks its place among the events queued after it.
	pending []byte

	raw syscall.RawConn
	// The arguments and results of one non-blocking write; writeFn is
	// bound once so that a write does not allocate a closure.
	wbuf    []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool

	// out gathers frames for this subscriber while its shard writes a
	// batch of events; only the shard's drainer touches it.
	out []byte

	// through, for a subscriber of a shard that writes through net/http
	// (shard_through.go): where it writes. stuck is set once a write to
	// it waited too long: it lags for good.
	through *streamOut
	stuck   atomic.Bool

	// stream is the subscriber's stream once its shard may write to it:
	// what the hub wakes when there is work for the stream's goroutine.
	stream atomic.Pointer[stream]
}

// writeLocked writes frame to a subscriber that is not lagging; with d.mu
// held. What the socket does not take goes to pending, and the stream's
// goroutine writes it from its queue. A frame that is shared (an event's
// frame, which never changes) is kept as it is; a gathering buffer, which
// the shard reuses, is copied. A broken connection drops the subscriber.
func (sh *shard) writeLocked(s *subscriber, frame []byte, shared bool) {
	d := s.d
	n, err := d.write(frame)
	if err != nil {
		if isTimeout(err) {
			sh.hub.drop(s, dropSlow) // a write through net/http, which waits
		} else {
			sh.hub.drop(s, dropWrite)
		}
		d.closed = true
		return
	}
	if n < len(frame) {
		if shared {
			d.pending = frame[n:]
		} else {
			d.pending = append([]byte(nil), frame[n:]...)
		}
		d.lagging = true
		// The queue is empty (it was not lagging), so this goes first.
		sh.hub.enqueue(s, item{kind: itemRestOfFrame})
	}
}

// write writes as much of b as the connection takes now: through
// net/http, which waits for all of it, or to the socket, which does not.
func (d *direct) write(b []byte) (int, error) {
	if d.through == nil {
		return d.tryWrite(b)
	}
	if !d.through.write(b) {
		return 0, d.through.err
	}
	return len(b), nil
}

// reuseOut empties out for the next batch; only the shard's drainer.
func (d *direct) reuseOut() {
	if cap(d.out) > 4<<10 {
		d.out = nil // don't pin a burst's buffer
	} else {
		d.out = d.out[:0]
	}
}

// settle hands a lagging subscriber back to its shard once its queue is
// empty, and reports whether it did. The stream's goroutine calls it after
// each write while lagging.
func (d *direct) settle(s *subscriber) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.stuck.Load() || s.queue.len() > 0 {
		return false
	}
	d.lagging = false
	return true
}

// takePending returns the rest of a frame that an itemRestOfFrame stands
// for.
func (d *direct) takePending() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pending
	d.pending = nil
	return p
}

// detach takes the connection back from the shard for good, for the
// stream's last words; it returns what the shard left unwritten of a frame
// and the stream's goroutine has not taken yet, which must go out first.
func (d *direct) detach() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	p := d.pending
	d.pending = nil
	return p
}

// A shard is one writer of direct subscribers: it holds an index of them
// and writes every event that matches one of them. Shards write in
// parallel; each writes its events in order.
type shard struct {
	hub  *Hub
	stop <-chan struct{}
	// through is set for a shard of streams written through net/http
	// (shard_through.go).
	through *throughShard

	mu  sync.RWMutex // guards idx and all; held for reading while writing
	idx subIndex
	all map[*subscriber]struct{}

	qmu     sync.Mutex // guards the fields below
	pending []shardItem
	spare   []shardItem
	running bool // a goroutine is draining pending: the one drainer
	wake    chan struct{}

	// The drainer's scratch: the subscribers gathered for (gather), and
	// the events gathered for them, not yet counted in the metrics.
	touched   []*subscriber
	delivered int

	// When the goroutine's last pass began, and the timer that holds the
	// next one back (pace); only the goroutine running the shard.
	lastPass  time.Time
	paceTimer *time.Timer
}

// A shardItem is an item offered to a shard, with the delivery span it
// counts towards (nil: none).
type shardItem struct {
	item
	dt *deliveryTrace
}

func newShard(h *Hub) *shard {
	return &shard{
		hub:  h,
		idx:  newSubIndex(),
		all:  make(map[*subscriber]struct{}),
		wake: make(chan struct{}, 1),
	}
}

func (sh *shard) add(s *subscriber) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.all[s] = struct{}{}
	sh.idx.add(s)
}

func (sh *shard) remove(s *subscriber) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.all, s)
	sh.idx.remove(s)
}

// offer queues it to the shard if any of its subscribers want it, and
// writes it at once in the calling goroutine when the shard is idle and
// the event has few subscribers here; otherwise the shard's goroutine
// writes it. Items are written in the order offered. It reports whether
// it took the item; if so, and dt is not nil, the shard counts what it
// writes of the event towards dt and calls dt.done once.
func (sh *shard) offer(it item, dt *deliveryTrace) bool {
	sh.mu.RLock()
	n := len(sh.all)
	if it.kind == itemEvent {
		n = sh.idx.count(it.ev.Topic)
	}
	sh.mu.RUnlock()
	if n == 0 {
		return false
	}
	sh.qmu.Lock()
	sh.pending = append(sh.pending, shardItem{it, dt})
	if sh.running {
		sh.qmu.Unlock()
		return true
	}
	sh.running = true
	sh.qmu.Unlock()
	if n <= inlineMax && sh.through == nil {
		sh.drain(false)
		return true
	}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
	return true
}

// loop runs the shard until the hub stops, and then counts it out of the
// hub's goroutines; unless it gave the shard to another goroutine
// (shard_through.go), which then does.
func (sh *shard) loop() {
	if sh.run() {
		sh.hub.done.Done()
	}
}

// run is the shard's goroutine: it drains what offer hands it until the
// hub stops, and reports true; or false once it gave the shard away.
func (sh *shard) run() bool {
	for {
		select {
		case <-sh.wake:
			if sh.through != nil {
				if !sh.drainThrough() {
					return false // another goroutine runs the shard now
				}
				continue
			}
			if !sh.drain(true) {
				return true // the hub stopped
			}
		case <-sh.stop:
			return true
		}
	}
}

// pace holds the shard's goroutine back until the hub's coalescing window
// has passed since its last pass began, so that a shard that events reach
// more often than that writes what came meanwhile to each subscriber with
// one write, and a busy topic's subscribers cost one write(2) each per
// window rather than one per event; this holds as well for the passes a
// goroutine makes one after another while events keep coming. A shard
// that events reach less often writes each at once. It reports false if
// the hub stopped meanwhile.
func (sh *shard) pace() bool {
	window := sh.hub.coalesce
	if window <= 0 {
		return true
	}
	now := time.Now()
	if wait := window - now.Sub(sh.lastPass); wait > 0 {
		if sh.paceTimer == nil {
			sh.paceTimer = time.NewTimer(wait)
		} else {
			sh.paceTimer.Reset(wait)
		}
		select {
		case <-sh.paceTimer.C:
		case <-sh.stop:
			return false
		}
		now = time.Now()
	}
	sh.lastPass = now
	return true
}

// drain writes the pending items until there are none, then lets the next
// offer start again. Only the goroutine that set running calls it: the
// delivering goroutine, which never waits (paced false), or the shard's,
// which makes one pass per coalescing window at most (paced). It reports
// false if the hub stopped while it waited.
func (sh *shard) drain(paced bool) bool {
	for {
		batch, stopped := sh.next(paced)
		if batch == nil {
			return !stopped
		}
		sh.write(batch)
		sh.reuse(batch)
	}
}

// next takes the pending items for the next pass; when paced, once the
// coalescing window since the last pass has passed (pace). It returns nil
// when none are pending, and the next offer starts again, or when the hub
// stopped while it waited (stopped).
func (sh *shard) next(paced bool) (batch []shardItem, stopped bool) {
	sh.qmu.Lock()
	if len(sh.pending) == 0 {
		sh.running = false
		sh.qmu.Unlock()
		return nil, false
	}
	if paced {
		// Only this goroutine takes from pending, so it is not empty
		// after the wait either, and what came meanwhile goes too.
		sh.qmu.Unlock()
		if !sh.pace() {
			return nil, true
		}
		sh.qmu.Lock()
	}
	batch = sh.pending
	sh.pending = sh.spare[:0]
	sh.qmu.Unlock()
	return batch, false
}

// reuse keeps a written batch's array for the next one.
func (sh *shard) reuse(batch []shardItem) {
	clear(batch)
	sh.qmu.Lock()
	sh.spare = batch[:0]
	sh.qmu.Unlock()
}

// each calls f for every subscriber of the shard that it is for, once.
// With sh.mu held for reading, by the drainer.
func (sh *shard) each(it item, f func(*subscriber)) {
	if it.kind == itemHeartbeat {
		for s := range sh.all {
			f(s)
		}
		return
	}
	ev := it.ev
	sh.idx.each(ev.Topic, func(s *subscriber) {
		if s.lastSeq != ev.Seq {
			s.lastSeq = ev.Seq
			if sh.hub.wants(s, ev) {
				f(s)
			}
		}
	})
}

// frameFor is what the shard writes of it to s.
func (sh *shard) frameFor(s *subscriber, it item) []byte {
	if it.kind == itemHeartbeat {
		return heartbeatFrame
	}
	return sh.hub.frameFor(it.ev, s.render)
}

// admit reports whether the shard writes it to s now; with s.d.mu held.
// It queues it instead to a subscriber that lags, and skips one whose
// stream took its connection back or that got the event from the history.
func (sh *shard) admit(s *subscriber, it item) bool {
	d := s.d
	switch {
	case d.closed, s.reason.Load() != dropNone:
		// Ending: nothing after its drop reaches it (a stream dropped for
		// events the broker lost must not get the ones after them).
		return false
	case d.lagging:
		sh.hub.enqueue(s, it)
		return false
	case it.kind == itemEvent && it.ev.Seq <= d.minSeq:
		return false
	}
	return true
}

// write writes a batch of items. One event goes out as its shared frame,
// written to each subscriber in turn; several are gathered per subscriber
// and written with one write each, as a subscriber's goroutine coalesces
// its queue when it is behind.
func (sh *shard) write(batch []shardItem) {
	if len(batch) > 1 {
		for at := 0; at < len(batch); {
			at = sh.gather(batch, at)
			for _, s := range sh.touched {
				d := s.d
				d.mu.Lock()
				if !d.closed && len(d.out) > 0 {
					sh.writeLocked(s, d.out, false)
				}
				d.reuseOut()
				d.mu.Unlock()
			}
			sh.written()
		}
		return
	}
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	it, delivered, n := batch[0].item, 0, 0
	sh.each(it, func(s *subscriber) {
		s.d.mu.Lock()
		if sh.admit(s, it) {
			f := sh.frameFor(s, it)
			sh.writeLocked(s, f, true)
			if it.kind == itemEvent {
				delivered++
				n += len(f)
			}
		}
		s.d.mu.Unlock()
	})
	sh.hub.metrics.delivered.Add(float64(delivered))
	if dt := batch[0].dt; dt != nil {
		dt.add(delivered, n)
		dt.done()
	}
}

// gather appends each subscriber's frames of the batch's items from at on
// to its out, holding mu for reading, and lists the subscribers in
// touched: the drainer writes them after, without mu. It stops after an
// item that brought a subscriber's out to coalesceMax, and returns where
// it stopped. A stuck subscriber (shard_through.go) has its events queued
// instead, without waiting for its lock, which the write that got stuck
// holds.
func (sh *shard) gather(batch []shardItem, at int) int {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	full := false
	for at < len(batch) && !full {
		b := batch[at]
		at++
		it, subs, n := b.item, 0, 0
		sh.each(it, func(s *subscriber) {
			d := s.d
			if d.stuck.Load() {
				if s.reason.Load() == dropNone {
					sh.hub.enqueue(s, it)
				}
				return
			}
			d.mu.Lock()
			if sh.admit(s, it) {
				if len(d.out) == 0 {
					sh.touched = append(sh.touched, s)
				}
				f := sh.frameFor(s, it)
				d.out = append(d.out, f...)
				full = full || len(d.out) >= coalesceMax
				if it.kind == itemEvent {
					subs++
					n += len(f)
				}
			}
			d.mu.Unlock()
		})
		sh.delivered += subs
		if b.dt != nil {
			// Counted as gathered; written just after.
			b.dt.add(subs, n)
			b.dt.done()
		}
	}
	return at
}

// written ends a gathering once its subscribers are written.
func (sh *shard) written() {
	clear(sh.touched)
	sh.touched = sh.touched[:0]
	sh.hub.metrics.delivered.Add(float64(sh.delivered))
	sh.delivered = 0
}
