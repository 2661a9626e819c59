package bridge

import (
	"sync/atomic"
	"time"
)

// Shards that write through net/http: an SSE stream over HTTP/2 (TLS with
// ALPN h2, as browsers connect, or h2c from a proxy) or over TLS cannot be
// taken over, so its writes go through its ResponseWriter, and they wait:
// an HTTP/2 Flush hands the frame to the connection's serve goroutine and
// waits until it is written, for as long as the client withholds
// flow-control window. A goroutine per stream woken for every event cost
// a third more CPU per delivery than one goroutine writing stream after
// stream, as a throughput floor does (docs/architecture.md, "HTTP/2 and
// TLS streams"); such a stream is therefore written by a shard too, as a
// plain one is, with two differences:
//
//   - Its frames are gathered holding the shard's lock for reading and
//     written after it is released, and never by the delivering
//     goroutine: a write that waits holds up neither subscribing nor
//     delivering.
//   - A watchdog hands the shard to a new goroutine when a write has
//     waited longer than stuckAfter: the stream whose write waits becomes
//     stuck for good, its events go to its queue and its own goroutine
//     writes them (after the waiting write returns), as every HTTP/2
//     stream's did before, while the shard's other streams go on. A
//     client that withholds window therefore delays its shard's other
//     streams once, by at most 2×stuckAfter, and never again.

// stuckAfter is how long a write through net/http may wait before the
// shard goes on without it; the watchdog looks this often.
var stuckAfter = 10 * time.Millisecond

// throughShards is how many shards write through net/http on a node of
// cores cores: several per core, so that a client whose write waits holds
// up few others, and many such clients at once (a network that stalls)
// are seen in parallel.
func throughShards(cores int) int { return min(max(8, 8*cores), 256) }

// abandoned marks, in throughShard.writing, a write that the watchdog
// gave up on: the goroutine in it no longer runs the shard.
var abandoned = &subscriber{}

// A throughShard is the state of a shard whose streams are written
// through net/http.
type throughShard struct {
	sh *shard

	// The batch being written, for whichever goroutine runs the shard:
	// cur, of which the items before at are gathered, and the
	// subscribers gathered (shard.touched, shard.delivered), of which the
	// ones before next are written. Only the goroutine running the shard
	// touches them.
	cur  []shardItem
	at   int // the next item of cur to gather
	next int // the next subscriber of touched to write

	// writing is the subscriber being written to, or nil; writes counts
	// the writes begun. The watchdog reads both; seen is the count at its
	// last look.
	writing atomic.Pointer[subscriber]
	writes  atomic.Uint64
	seen    atomic.Uint64

	// The watchdog is armed while the shard writes.
	watch  *time.Timer
	active atomic.Bool
	armed  atomic.Bool
}

func newThroughShard(sh *shard) *throughShard {
	t := &throughShard{sh: sh}
	t.watch = time.AfterFunc(time.Hour, t.check)
	t.watch.Stop()
	return t
}

// drainThrough writes the pending items until there are none, as drain
// does. It reports false when the watchdog gave the shard to another
// goroutine while this one waited in a write: that goroutine drains (and
// runs the shard) from then on.
func (sh *shard) drainThrough() bool {
	t := sh.through
	t.active.Store(true)
	t.arm()
	for {
		if t.cur == nil {
			batch, _ := sh.next(true)
			if batch == nil {
				// None pending, or the hub stopped: either way the
				// goroutine goes back to its loop, which sees which.
				t.active.Store(false)
				return true
			}
			t.cur, t.at = batch, 0
		}
		if len(sh.touched) == 0 {
			t.at = sh.gather(t.cur, t.at)
			t.next = 0
		}
		for t.next < len(sh.touched) {
			s := sh.touched[t.next]
			t.next++
			if !t.flush(s) {
				return false
			}
		}
		sh.written()
		if t.at == len(t.cur) {
			sh.reuse(t.cur)
			t.cur = nil
		}
	}
}

// flush writes what was gathered for s. It reports false when the
// watchdog gave up on the write meanwhile and another goroutine runs the
// shard.
func (t *throughShard) flush(s *subscriber) bool {
	d := s.d
	d.mu.Lock()
	defer func() {
		d.reuseOut()
		d.mu.Unlock()
	}()
	if d.closed || d.lagging || len(d.out) == 0 {
		return true
	}
	// Counted before it is shown, so that the watchdog, which reads in
	// the other order, never takes a write that just began for one it
	// saw before.
	t.writes.Add(1)
	t.writing.Store(s)
	t.sh.writeLocked(s, d.out, false)
	if t.writing.CompareAndSwap(s, nil) {
		return true
	}
	// Stuck: what came meanwhile is in its queue, which its goroutine
	// writes from now on.
	d.lagging = true
	return false
}

// arm starts the watchdog if it is not running.
func (t *throughShard) arm() {
	if !t.armed.Swap(true) {
		t.watch.Reset(stuckAfter)
	}
}

// check is the watchdog: a write that is the same as at its last look has
// waited at least stuckAfter; it gives up on it and starts a goroutine
// that goes on with the shard.
func (t *throughShard) check() {
	s := t.writing.Load()
	n := t.writes.Load()
	if s != nil && s != abandoned && n == t.seen.Load() {
		if t.writing.CompareAndSwap(s, abandoned) {
			// From here on its shard queues its events, and the
			// goroutine that waits in its write leaves the shard.
			s.d.stuck.Store(true)
			t.sh.hub.metrics.stuckWrites.Inc()
			// The new goroutine takes the shard's count in hub.done
			// with it: the one left in the write may outlive the hub,
			// until the server closes its connection.
			go func() {
				t.writing.Store(nil)
				if t.sh.drainThrough() {
					t.sh.loop()
				}
			}()
		}
	}
	t.seen.Store(n)
	if t.active.Load() {
		t.watch.Reset(stuckAfter)
		return
	}
	t.armed.Store(false)
	if t.active.Load() {
		t.arm()
	}
}
