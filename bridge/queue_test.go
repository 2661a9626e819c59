package bridge

import (
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/broker"
)

func TestItemQueueKeepsOrderAndBound(t *testing.T) {
	q := newItemQueue(100)
	evs := make([]*broker.Event, 150)
	for i := range evs {
		evs[i] = &broker.Event{Seq: uint64(i)}
	}
	for i, ev := range evs {
		if got, want := q.push(item{ev: ev}), i < 100; got != want {
			t.Fatalf("push %d: %v, want %v (bound 100)", i, got, want)
		}
	}
	if q.len() != 100 {
		t.Fatalf("len %d, want 100", q.len())
	}
	for i := range 100 {
		it, ok := q.pop()
		if !ok || it.ev != evs[i] {
			t.Fatalf("pop %d: %v %v, want event %d", i, it.ev, ok, i)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop of an empty queue succeeded")
	}
	// A drained burst's slots go at the next heartbeat.
	q.trim()
	if cap(q.buf) > queueKeep {
		t.Fatalf("a drained queue keeps %d slots, want at most %d", cap(q.buf), queueKeep)
	}
}

// An idle subscriber's queue holds no slots at all until something is
// queued, and a heartbeat's worth afterwards.
func TestItemQueueIsSmallWhenIdle(t *testing.T) {
	q := newItemQueue(256)
	if q.buf != nil {
		t.Fatal("a new queue has slots")
	}
	q.push(item{kind: itemHeartbeat})
	q.pop()
	if cap(q.buf) > 4 {
		t.Fatalf("after one item the queue keeps %d slots", cap(q.buf))
	}
}

// No item is left without a token in ready: a consumer that waits on ready
// and then drains gets everything, however pushes interleave.
func TestItemQueueNeverLosesAWakeUp(t *testing.T) {
	q := newItemQueue(1 << 20)
	const producers, each = 4, 20000
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range each {
				for !q.push(item{kind: itemHeartbeat}) {
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	got := 0
	for got < producers*each {
		<-q.ready
		for {
			if _, ok := q.pop(); !ok {
				break
			}
			got++
		}
	}
	<-done
	if got != producers*each {
		t.Fatalf("consumed %d of %d", got, producers*each)
	}
}
