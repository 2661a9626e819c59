package bridge

import (
	"sync"
	"syscall"
)

// Direct writes: a plain HTTP/1.1 stream is taken over from net/http once
// its response head is out, and from then on the hub's shard writers write
// each event's shared frame to its socket themselves, in one pass over the
// subscribers of a topic, with a write that never waits. The stream's own
// goroutine sleeps until it has something to do, instead of being woken
// for every event as a goroutine per subscriber would be: that wake-up
// cost more than the write itself at low event rates.
//
// A socket that cannot take a whole frame at once puts its subscriber
// behind ("lagging"): the rest of the frame and the events after it go to
// the subscriber's queue, which its goroutine writes with ordinary blocking
// writes and the write timeout, exactly as for any other stream, and hands
// back to the shard once the queue is empty. A queue that overflows drops
// the subscriber as too slow, as it always did.
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
	// lagging: the stream's goroutine is writing; the shard queues events
	// to the subscriber instead. Subscribers start lagging, until their
	// history is written.
	lagging bool
	// closed: the stream's goroutine has taken the connection back for
	// good; the shard leaves it alone.
	closed bool
	// minSeq: events up to it were replayed from the history; skip them.
	minSeq uint64
	// pending is the unwritten rest of a frame; restOfFrame in the queue
	// marks its place among the events queued after it.
	pending []byte

	raw syscall.RawConn
	// The arguments and results of one non-blocking write; writeFn is
	// bound once so that a write does not allocate a closure.
	wbuf    []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool

	// out gathers frames for this subscriber while its shard writes a
	// batch of events; only the shard's drain touches it.
	out []byte
}

// writeLocked writes frame to a subscriber that is not lagging; with d.mu
// held. What the socket does not take goes to pending, and the stream's
// goroutine writes it from its queue. A frame that is shared (an event's
// frame, which never changes) is kept as it is; a gathering buffer, which
// the shard reuses, is copied. A broken connection drops the subscriber.
func (sh *shard) writeLocked(s *subscriber, frame []byte, shared bool) {
	d := s.d
	n, err := d.tryWrite(frame)
	if err != nil {
		sh.hub.drop(s, dropWrite)
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
		sh.queueLocked(s, restOfFrame) // the queue is empty: it was not lagging
	}
}

// queueLocked hands ev to a lagging subscriber's goroutine; with d.mu held.
func (sh *shard) queueLocked(s *subscriber, ev *Event) {
	if ev == heartbeat {
		if len(s.queue) == 0 {
			select {
			case s.queue <- heartbeat:
			default:
			}
		}
		return
	}
	select {
	case s.queue <- ev:
	default:
		sh.hub.drop(s, dropSlow)
	}
}

// settle hands a lagging subscriber back to its shard once its queue is
// empty, and reports whether it did. The stream's goroutine calls it after
// each write while lagging.
func (d *direct) settle(s *subscriber) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(s.queue) > 0 {
		return false
	}
	d.lagging = false
	return true
}

// takePending returns the rest of a frame that restOfFrame stands for.
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

// restOfFrame is queued to a subscriber that fell behind in the middle of
// a frame: its goroutine writes the rest of the frame (takePending) there,
// before the events queued after it.
var restOfFrame = &Event{}

// A shard is one writer of direct streams: it holds an index of its
// subscribers and writes every event that matches one of them. Shards
// write in parallel; each writes its events in order.
type shard struct {
	hub *Hub

	mu    sync.RWMutex // guards the index; held for reading while writing
	exact map[string]map[*subscriber]struct{}
	wild  map[string]*wildSubs
	all   map[*subscriber]struct{}

	qmu     sync.Mutex // guards the fields below
	pending []*Event
	spare   []*Event
	running bool // a goroutine is draining pending
	wake    chan struct{}

	touched []*subscriber // drain's scratch
}

func newShard(h *Hub) *shard {
	return &shard{
		hub:   h,
		exact: make(map[string]map[*subscriber]struct{}),
		wild:  make(map[string]*wildSubs),
		all:   make(map[*subscriber]struct{}),
		wake:  make(chan struct{}, 1),
	}
}

func (sh *shard) add(s *subscriber) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.all[s] = struct{}{}
	index(sh.exact, sh.wild, s)
}

func (sh *shard) remove(s *subscriber) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.all, s)
	unindex(sh.exact, sh.wild, s)
}

// offer queues ev to the shard if any of its subscribers want it, and
// writes it at once in the calling goroutine when the shard is idle and
// the event has few subscribers here; otherwise the shard's goroutine
// writes it. Events are written in the order offered.
func (sh *shard) offer(ev *Event) {
	sh.mu.RLock()
	n := len(sh.exact[ev.Topic])
	for _, w := range sh.wild {
		if w.pattern.Match(ev.Topic) {
			n += len(w.subs)
		}
	}
	if ev == heartbeat {
		n = len(sh.all)
	}
	sh.mu.RUnlock()
	if n == 0 {
		return
	}
	sh.qmu.Lock()
	sh.pending = append(sh.pending, ev)
	if sh.running {
		sh.qmu.Unlock()
		return
	}
	sh.running = true
	sh.qmu.Unlock()
	if n <= inlineMax {
		sh.drain()
		return
	}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// run is the shard's goroutine: it drains what offer hands it.
func (sh *shard) run(stop <-chan struct{}) {
	for {
		select {
		case <-sh.wake:
			sh.drain()
		case <-stop:
			return
		}
	}
}

// drain writes the pending events until there are none, then lets the
// next offer start again.
func (sh *shard) drain() {
	for {
		sh.qmu.Lock()
		batch := sh.pending
		if len(batch) == 0 {
			sh.running = false
			sh.qmu.Unlock()
			return
		}
		sh.pending = sh.spare[:0]
		sh.qmu.Unlock()

		sh.write(batch)

		clear(batch)
		sh.qmu.Lock()
		sh.spare = batch[:0]
		sh.qmu.Unlock()
	}
}

// each calls f for every subscriber of the shard that ev is for, once.
// With sh.mu held for reading.
func (sh *shard) each(ev *Event, f func(*subscriber)) {
	if ev == heartbeat {
		for s := range sh.all {
			f(s)
		}
		return
	}
	for s := range sh.exact[ev.Topic] {
		if s.lastSeq != ev.Seq {
			s.lastSeq = ev.Seq
			f(s)
		}
	}
	for _, w := range sh.wild {
		if w.pattern.Match(ev.Topic) {
			for s := range w.subs {
				if s.lastSeq != ev.Seq {
					s.lastSeq = ev.Seq
					f(s)
				}
			}
		}
	}
}

// frameFor is what the shard writes of ev to s: a heartbeat is the same
// comment line in every rendering.
func (sh *shard) frameFor(s *subscriber, ev *Event) []byte {
	if ev == heartbeat {
		return sh.hub.frameFor(ev, nil)
	}
	return sh.hub.frameFor(ev, s.render)
}

// admit reports whether the shard writes ev to s now; with s.d.mu held.
// It queues ev instead to a subscriber that lags, and skips one whose
// stream took its connection back or that got ev from the history.
func (sh *shard) admit(s *subscriber, ev *Event) bool {
	d := s.d
	switch {
	case d.closed:
		return false
	case d.lagging:
		sh.queueLocked(s, ev)
		return false
	case ev != heartbeat && ev.Seq <= d.minSeq:
		return false
	}
	return true
}

// write writes a batch of events. One event goes out as its shared frame,
// written to each subscriber in turn; several are gathered per subscriber
// and written with one write each, as a subscriber's goroutine coalesces
// its queue when it is behind.
func (sh *shard) write(batch []*Event) {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	delivered := 0
	if len(batch) == 1 {
		ev := batch[0]
		sh.each(ev, func(s *subscriber) {
			s.d.mu.Lock()
			if sh.admit(s, ev) {
				sh.writeLocked(s, sh.frameFor(s, ev), true)
				if ev != heartbeat {
					delivered++
				}
			}
			s.d.mu.Unlock()
		})
		sh.hub.metrics.delivered.Add(float64(delivered))
		return
	}

	for _, ev := range batch {
		sh.each(ev, func(s *subscriber) {
			d := s.d
			d.mu.Lock()
			if sh.admit(s, ev) {
				if len(d.out) == 0 {
					sh.touched = append(sh.touched, s)
				}
				d.out = append(d.out, sh.frameFor(s, ev)...)
				if ev != heartbeat {
					delivered++
				}
				if len(d.out) >= coalesceMax {
					// Only this drain makes a subscriber lag, so it
					// cannot have started lagging since.
					sh.writeLocked(s, d.out, false)
					d.out = d.out[:0]
				}
			}
			d.mu.Unlock()
		})
	}
	for i, s := range sh.touched {
		d := s.d
		d.mu.Lock()
		if !d.closed && len(d.out) > 0 {
			sh.writeLocked(s, d.out, false)
		}
		d.mu.Unlock()
		if cap(d.out) > 4<<10 {
			d.out = nil // don't pin a burst's buffer
		} else {
			d.out = d.out[:0]
		}
		sh.touched[i] = nil
	}
	sh.touched = sh.touched[:0]
	sh.hub.metrics.delivered.Add(float64(delivered))
}
