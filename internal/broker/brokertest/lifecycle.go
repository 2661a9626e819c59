package brokertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// lateDelivery is how long the close check listens for a delivery that
// should not come after Close returned. Waiting for nothing to happen can
// only be bounded; this bound is short because Close must be prompt.
const lateDelivery = 100 * time.Millisecond

// testCloseWhileBusy: Close, with publishers, a replayer and a
// subscription running, returns promptly and stops delivery; later calls
// fail with ErrClosed; Close is idempotent; the broker's goroutines end.
func (s *suite) testCloseWhileBusy(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	baseline := runtime.NumGoroutine()

	r := newRecorder()
	// Not cancelled: only Close may end this subscription.
	if err := b.Subscribe(context.Background(), r.deliver); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	var closeReturned atomic.Bool
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			topic := fmt.Sprintf("close.%d", p)
			for i := 0; ; i++ {
				afterClose := closeReturned.Load()
				_, err := b.Publish(ctx, newEvent(topic, i))
				switch {
				case err == nil && afterClose:
					t.Errorf("Publish after Close returned succeeded")
					return
				case err == nil:
					continue
				case afterClose && !errors.Is(err, broker.ErrClosed):
					t.Errorf("Publish after Close returned: %v; want ErrClosed", err)
				}
				return // a call racing with Close may fail any way
			}
		})
	}
	ps := parsePatterns(t, []string{"close.>"})
	wg.Go(func() {
		after := broker.EventID{Epoch: b.Epoch()}
		for {
			afterClose := closeReturned.Load()
			res, err := b.Replay(ctx, ps, after)
			switch {
			case err == nil && afterClose:
				t.Errorf("Replay after Close returned succeeded")
				return
			case err == nil:
				if n := len(res.Events); n > 0 {
					after.Seq = res.Events[n-1].Seq
				}
				continue
			case afterClose && !errors.Is(err, broker.ErrClosed):
				t.Errorf("Replay after Close returned: %v; want ErrClosed", err)
			}
			return
		}
	})
	r.waitFor(t, s.opts.Timeout, "100 deliveries before closing", func(evs []*broker.Event) bool { return len(evs) >= 100 })

	closed := make(chan error, 1)
	go func() {
		err := b.Close()
		if n := r.inFlight.Load(); n > 0 {
			err = errors.Join(err, fmt.Errorf("%d deliver calls still running after Close returned", n))
		}
		r.closed.Store(true)
		closeReturned.Store(true)
		closed <- err
	}()
	timer := time.NewTimer(s.opts.Timeout)
	defer timer.Stop()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-timer.C:
		t.Fatalf("Close did not return within %v while publishers were running", s.opts.Timeout)
	}
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-timer.C:
		t.Fatalf("publishers and replayer still running %v after Close", s.opts.Timeout)
	}

	if _, err := b.Publish(ctx, newEvent("close.after", 0)); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Close: %v; want ErrClosed", err)
	}
	if _, err := b.Replay(ctx, parsePatterns(t, []string{">"}), broker.EventID{Epoch: b.Epoch()}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Replay after Close: %v; want ErrClosed", err)
	}
	if err := b.Subscribe(ctx, func(*broker.Event) {}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Close: %v; want ErrClosed", err)
	}
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("second Close: %v; want nil or ErrClosed", err)
		}
	case <-timer.C:
		t.Fatal("second Close did not return")
	}

	// Listen a little for a delivery that should not come.
	select {
	case <-r.wake:
	default:
	}
	late := time.NewTimer(lateDelivery)
	defer late.Stop()
	select {
	case <-r.wake:
	case <-late.C:
	}
	if n := r.late.Load(); n > 0 {
		t.Errorf("deliver was called %d times after Close returned", n)
	}
	r.checkOrder(t)

	poll.Until(t, s.opts.Timeout, fmt.Sprintf("goroutines to end after Close (%d now, %d before Subscribe)", runtime.NumGoroutine(), baseline), func() bool {
		return runtime.NumGoroutine() <= baseline
	})
}

// testMultiNode: two nodes on one log see the same events with the same
// Seqs, resume each other's ids, share idempotency keys, and one closing
// leaves the other working.
func (s *suite) testMultiNode(t *testing.T) {
	if s.opts.NewNode == nil {
		t.Skip("single-node backend: Options.NewNode is nil")
	}
	ctx := s.ctx(t)
	b1 := s.newBroker(t, roomy)
	b2 := s.newNode(t, b1)
	if b1.Epoch() != b2.Epoch() {
		t.Fatalf("nodes on one log have epochs %q and %q", b1.Epoch(), b2.Epoch())
	}
	nodes := []broker.Broker{b1, b2}
	r1, r2 := subscribe(t, ctx, b1), subscribe(t, ctx, b2)

	var all []*broker.Event
	for i := range 20 {
		ev := publish(t, ctx, nodes[i%2], newEvent([]string{"node.a", "node.b", "node.a.c"}[i%3], i))
		if n := len(all); n > 0 && ev.Seq <= all[n-1].Seq {
			t.Fatalf("event published on node %d got Seq %d after Seq %d", i%2+1, ev.Seq, all[n-1].Seq)
		}
		all = append(all, ev)
	}
	// Both nodes publishing at once.
	published := make([][]*broker.Event, 4)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 50 {
				ev := newEvent("node.b", 1000*(p+1)+i)
				want := clone(ev)
				if _, err := nodes[p%2].Publish(ctx, ev); err != nil {
					t.Errorf("Publish on node %d: %v", p%2+1, err)
					return
				}
				want.Seq, want.Time = ev.Seq, ev.Time
				published[p] = append(published[p], want)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all = append(all, slices.Concat(published...)...)
	slices.SortFunc(all, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	for i := 1; i < len(all); i++ {
		if all[i].Seq == all[i-1].Seq {
			t.Fatalf("Seq %d was given to two events", all[i].Seq)
		}
	}

	for i, r := range []*recorder{r1, r2} {
		r.waitSeqs(t, s.opts.Timeout, seqsOf(all))
		r.checkOrder(t)
		checkEvents(t, fmt.Sprintf("delivered on node %d", i+1), r.snapshot(), all)
	}
	for _, pos := range []uint64{0, all[5].Seq, all[len(all)-1].Seq} {
		after := broker.EventID{Epoch: b1.Epoch(), Seq: pos} // an id node 1 gave out
		for i, n := range nodes {
			res := replay(t, ctx, n, after, "node.>")
			checkEvents(t, fmt.Sprintf("replayed on node %d after %v", i+1, after), res.Events, pick(all, pos, "node.a", "node.b", "node.a.c"))
			if res.Truncated {
				t.Errorf("replayed on node %d after %v: Truncated, but nothing was removed", i+1, after)
			}
		}
	}

	ev := newEvent("node.a", 9999)
	ev.IdempotencyKey = "shared"
	orig := publish(t, ctx, b1, ev)
	ev = newEvent("node.a", 9999)
	ev.IdempotencyKey = "shared"
	res, err := b2.Publish(ctx, ev)
	if err != nil {
		t.Fatalf("Publish on node 2: %v", err)
	}
	if !res.Duplicate || res.Seq != orig.Seq {
		t.Errorf("key repeated on node 2: %+v; want Duplicate of Seq %d from node 1", res, orig.Seq)
	}

	if err := b2.Close(); err != nil {
		t.Errorf("Close node 2: %v", err)
	}
	last := publish(t, ctx, b1, newEvent("node.a", 10000))
	r1.waitSeqs(t, s.opts.Timeout, []uint64{last.Seq})
	rres := replay(t, ctx, b1, broker.EventID{Epoch: b1.Epoch(), Seq: orig.Seq}, "node.a")
	checkEvents(t, "replayed on node 1 after node 2 closed", rres.Events, []*broker.Event{last})
}
