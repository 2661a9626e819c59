package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// A deliveryLog is a deliver function that records the Seqs it is given
// and whether two calls ever overlapped.
type deliveryLog struct {
	inFlight atomic.Int32
	overlap  atomic.Bool
	mu       sync.Mutex
	seqs     []uint64
}

func (l *deliveryLog) deliver(ev *broker.Event) {
	if l.inFlight.Add(1) > 1 {
		l.overlap.Store(true)
	}
	l.mu.Lock()
	l.seqs = append(l.seqs, ev.Seq)
	l.mu.Unlock()
	l.inFlight.Add(-1)
}

func (l *deliveryLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seqs)
}

// check fails t unless the calls never overlapped and the Seqs came in
// strictly increasing order.
func (l *deliveryLog) check(t *testing.T) {
	t.Helper()
	if l.overlap.Load() {
		t.Error("deliver was called from two goroutines at once")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 1; i < len(l.seqs); i++ {
		if l.seqs[i] <= l.seqs[i-1] {
			t.Fatalf("delivery %d has Seq %d after Seq %d", i, l.seqs[i], l.seqs[i-1])
		}
	}
}

// A deliver call that blocks holds up no other publisher: the broker
// delivers with none of its locks held. The events published meanwhile
// are delivered after it, in Seq order, from one goroutine at a time.
func TestBlockedDeliverHoldsUpNoPublish(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	var log deliveryLog
	entered, release := make(chan struct{}), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release) // so that Close does not wait for ever on failure
		}
	}()
	err := b.Subscribe(t.Context(), func(ev *broker.Event) {
		log.deliver(ev)
		if ev.Topic == "slow" {
			close(entered)
			<-release
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = b.Publish(context.Background(), &broker.Event{Topic: "slow", Type: "t"}) }()
	<-entered

	all, err := broker.ParsePattern(">")
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := b.Publish(context.Background(), &broker.Event{Topic: fmt.Sprintf("fast.%d", i%4), Type: "t"}); err != nil {
				done <- err
				return
			}
		}
		_, err := b.Replay(context.Background(), []broker.Pattern{all}, broker.EventID{})
		done <- err
	}()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timeout.C:
		t.Fatal("Publish and Replay waited for a deliver call on another topic")
	}
	if got := log.len(); got != 1 {
		t.Fatalf("%d deliveries while the first was blocked; want 1", got)
	}

	close(release)
	poll.Until(t, 10*time.Second, fmt.Sprintf("%d deliveries", n+1), func() bool { return log.len() == n+1 })
	log.check(t)
}

// Publishers on many topics at once: every event is delivered once, in
// Seq order, one call at a time, and Close waits for the delivery that is
// running. Run with -race.
func TestConcurrentDelivery(t *testing.T) {
	b := New(Options{})
	var logs [3]deliveryLog
	for i := range logs {
		if err := b.Subscribe(t.Context(), logs[i].deliver); err != nil {
			t.Fatal(err)
		}
	}
	const publishers, each = 8, 500
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if _, err := b.Publish(context.Background(), &broker.Event{Topic: fmt.Sprintf("t.%d", (p+i)%5), Type: "t"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range logs {
		poll.Until(t, 10*time.Second, fmt.Sprintf("subscription %d to get every event", i), func() bool { return logs[i].len() == publishers*each })
		logs[i].check(t)
	}

	// Close while publishers go on: once it returns, no call is running.
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Publish(context.Background(), &broker.Event{Topic: "late", Type: "t"}); err != nil {
					return
				}
			}
		})
	}
	poll.Until(t, 10*time.Second, "deliveries after the first round", func() bool { return logs[0].len() > publishers*each })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range logs {
		if n := logs[i].inFlight.Load(); n != 0 {
			t.Errorf("subscription %d: %d deliver calls running after Close returned", i, n)
		}
	}
	after := logs[0].len()
	close(stop)
	wg.Wait()
	if n := logs[0].len(); n != after {
		t.Errorf("%d deliveries after Close returned", n-after)
	}
	for i := range logs {
		logs[i].check(t)
	}
}
