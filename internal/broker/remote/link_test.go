package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/poll"
)

func newLink(t *testing.T, logs *outagetest.Log) *Link {
	l := New(Options{
		Name: "Test", LogName: "test", Timeout: time.Second,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		IsTimeout: func(err error) bool { return err.Error() == "slow" },
		Reset: func(err error) error {
			if err.Error() == "reset" {
				return errors.New("the log was reset")
			}
			return nil
		},
	})
	t.Cleanup(func() { l.Close() })
	return l
}

func TestFail(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	var down atomic.Bool
	down.Store(true)
	l.Start(func(context.Context) error {
		if down.Load() {
			return errors.New("refused")
		}
		return nil
	})

	ctx, cancel := l.Bound(context.Background())
	defer cancel()
	err := l.Fail(ctx, "publish", errors.New("refused"))
	if !errors.Is(err, broker.ErrUnavailable) || err.Error() != "unavailable: Test: publish: refused" {
		t.Errorf("a refused call: %v; want ErrUnavailable naming the backend and the call", err)
	}
	if err := l.Fail(ctx, "publish", errors.New("slow")); err == nil || !strings.HasSuffix(err.Error(), "no answer within 1s") {
		t.Errorf("a call the client timed out: %v; want no answer within the timeout", err)
	}
	if err := l.Fail(ctx, "publish", errors.New("reset")); err == nil || err.Error() != "the log was reset" {
		t.Errorf("a call that found the log reset: %v; want Reset's error", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	bctx, bcancel := l.Bound(cctx)
	defer bcancel()
	ccancel()
	if err := l.Fail(bctx, "publish", errors.New("refused")); !errors.Is(err, context.Canceled) || errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("a call whose caller gave up: %v; want the caller's context error", err)
	}

	down.Store(false)
	poll.Until(t, 10*time.Second, `"broker back" to be logged`, func() bool { return logs.Count("broker back") > 0 })
	if n := logs.Count("broker unavailable"); n != 1 {
		t.Errorf(`"broker unavailable" logged %d times for one outage; want once`, n)
	}

	l.Close()
	if err := l.Fail(ctx, "publish", errors.New("refused")); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("after Close: %v; want ErrClosed", err)
	}
	if err := l.Usable(); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Usable after Close: %v; want ErrClosed", err)
	}
}

func TestBreak(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	first := fmt.Errorf("%w: reset once", broker.ErrUnavailable)
	if err := l.Break(first); err != first {
		t.Fatalf("Break = %v; want its reason", err)
	}
	if err := l.Break(errors.New("again")); err != first {
		t.Errorf("second Break = %v; want the first reason", err)
	}
	if err := l.Usable(); err != first {
		t.Errorf("Usable after Break = %v; want the reason", err)
	}
	if _, _, err := l.Begin(context.Background()); err != first {
		t.Errorf("Begin after Break = %v; want the reason", err)
	}
	if n := logs.Count("broker log was reset"); n != 1 {
		t.Errorf("the reset was logged %d times; want once", n)
	}
}

// Close halts every subscription and returns once their goroutines have;
// a Subscribe after Close fails and interrupts what it was given.
func TestSubscribeAndClose(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	var running, interrupted atomic.Int32
	for range 3 {
		wake := make(chan struct{})
		err := l.Subscribe(context.Background(), func() { interrupted.Add(1); close(wake) }, func(ctx context.Context, s *Subscription) {
			running.Add(1)
			defer running.Add(-1)
			<-wake // as a client blocked in a read
			if !s.Stopped() || ctx.Err() == nil {
				t.Error("woken, but the subscription is not stopped")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	if err := l.Subscribe(ctx, nil, func(ctx context.Context, s *Subscription) { <-ctx.Done(); close(ended) }); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-ended // the subscription's context ending halts it

	poll.Until(t, 10*time.Second, "the subscriptions to run", func() bool { return running.Load() == 3 })
	if !l.Close() {
		t.Error("the first Close reports that the Link was closed already")
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d subscriptions still running after Close returned", n)
	}
	if l.Close() {
		t.Error("a second Close reports that it closed the Link")
	}
	err := l.Subscribe(context.Background(), func() { interrupted.Add(1) }, func(context.Context, *Subscription) {
		t.Error("a subscription ran after Close")
	})
	if !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Close: %v; want ErrClosed", err)
	}
	if n := interrupted.Load(); n != 4 {
		t.Errorf("interrupt called %d times; want once for each of 4 subscriptions", n)
	}
}

func TestReplayPosition(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	p, err := broker.ParsePattern(">")
	if err != nil {
		t.Fatal(err)
	}
	all := []broker.Pattern{p}
	for _, c := range []struct {
		after     broker.EventID
		patterns  []broker.Pattern
		from      uint64
		read      bool
		truncated bool
	}{
		{broker.EventID{Epoch: "e1", Seq: 7}, all, 7, true, false},
		{broker.EventID{}, all, 0, true, false},
		{broker.EventID{Epoch: "e0", Seq: 7}, all, 0, true, true},
		{broker.EventID{Epoch: "e0"}, all, 0, true, true},
		{broker.EventID{Epoch: "e0", Seq: 7}, nil, 0, false, true},
	} {
		read := false
		res, err := l.Replay(context.Background(), "e1", c.patterns, c.after, func(ctx context.Context, from uint64, res *broker.ReplayResult) error {
			read = true
			if from != c.from {
				t.Errorf("after %v: read from %d; want %d", c.after, from, c.from)
			}
			if _, ok := ctx.Deadline(); !ok {
				t.Errorf("after %v: read's context has no deadline", c.after)
			}
			return nil
		})
		if err != nil || read != c.read || res.Truncated != c.truncated {
			t.Errorf("after %v with %d patterns: err %v, read %v, Truncated %v; want read %v, Truncated %v", c.after, len(c.patterns), err, read, res.Truncated, c.read, c.truncated)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Replay(ctx, "e1", all, broker.EventID{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Replay with an ended context: %v; want its error", err)
	}
}

// TestExpired: a call that has not reached the server yet fails once its
// caller gave up, with the caller's error, or once the call timeout passed
// since it began, with ErrUnavailable as a call without an answer, and not
// before.
func TestExpired(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	if err := l.Expired(context.Background(), time.Now(), "publish"); err != nil {
		t.Errorf("a call begun now: %v; want nil", err)
	}
	err := l.Expired(context.Background(), time.Now().Add(-time.Second), "publish")
	if !errors.Is(err, broker.ErrUnavailable) || !strings.HasSuffix(err.Error(), "publish: no answer within 1s") {
		t.Errorf("a call begun a timeout ago: %v; want ErrUnavailable, no answer within the timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Expired(ctx, time.Now(), "publish"); !errors.Is(err, context.Canceled) || errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("a call whose caller gave up: %v; want the caller's error", err)
	}
	if err := l.Ready(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ready with an ended ctx: %v; want its error", err)
	}
}

// TestFailSent: a call that may have reached the server, whose caller gave
// up first, fails with ErrUnavailable (its outcome is not known) wrapping
// the caller's error; otherwise as Fail.
func TestFailSent(t *testing.T) {
	var logs outagetest.Log
	l := newLink(t, &logs)
	cctx, cancel := context.WithCancel(context.Background())
	ctx, bcancel := l.Bound(cctx)
	defer bcancel()
	cancel()
	if err := l.FailSent(ctx, "publish", context.Canceled); !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("a sent call whose caller gave up: %v; want ErrUnavailable wrapping context.Canceled", err)
	}
	ctx, bcancel = l.BoundSince(context.Background(), time.Now().Add(-time.Second))
	defer bcancel()
	if err := l.FailSent(ctx, "publish", context.DeadlineExceeded); !errors.Is(err, broker.ErrUnavailable) || !strings.HasSuffix(err.Error(), "no answer within 1s") {
		t.Errorf("a sent call without an answer: %v; want ErrUnavailable, no answer within the timeout", err)
	}
}
