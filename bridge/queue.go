package bridge

import "sync"

// An itemQueue is a subscriber's bounded queue. Any goroutine may push,
// never waiting; only the stream's goroutine pops. Its slots are a ring
// that grows by doubling as items wait, up to the bound, and that the
// heartbeat schedule lets go once a burst has long drained (trim): an idle
// subscriber holds a few words and a channel, not its bound's worth of
// slots (most streams are idle, and a direct stream uses its queue only
// while it lags), while a busy one does not regrow its ring every burst.
type itemQueue struct {
	mu   sync.Mutex
	buf  []item // the ring; len(buf) is its capacity
	head int
	n    int
	max  int
	// ready holds a token when items may be waiting: a push that makes
	// the queue non-empty puts one there, and the stream's goroutine
	// waits on it. A token with nothing behind it is harmless; no item
	// is ever without one.
	ready chan struct{}
}

// queueKeep is the ring size a drained queue keeps through trim; a larger
// one, grown by a burst, is let go.
const queueKeep = 8

func newItemQueue(max int) *itemQueue {
	return &itemQueue{max: max, ready: make(chan struct{}, 1)}
}

// push queues it and reports whether there was room.
func (q *itemQueue) push(it item) bool {
	q.mu.Lock()
	if q.n == q.max {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.buf) {
		grown := make([]item, min(max(2*len(q.buf), 4), q.max))
		for i := range q.n {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	signal := q.n == 1
	q.mu.Unlock()
	if signal {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return true
}

// pop takes the oldest item; ok is false when there is none.
func (q *itemQueue) pop() (it item, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return item{}, false
	}
	it = q.buf[q.head]
	q.buf[q.head] = item{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return it, true
}

// trim lets go of the slots of an empty queue larger than queueKeep: the
// heartbeat schedule calls it, so a burst's slots go within an interval
// of its end.
func (q *itemQueue) trim() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 && len(q.buf) > queueKeep {
		q.buf, q.head = nil, 0
	}
}

// len returns how many items wait.
func (q *itemQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// rearm makes the stream's goroutine look again after it stopped taking
// items with some left (a write's worth at a time).
func (q *itemQueue) rearm() {
	if q.len() > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}
